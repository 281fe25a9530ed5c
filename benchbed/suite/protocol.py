"""The suite: a benchmark protocol as plain data, validated by pydantic.

A suite names a dataset, the methods to train, a grid (latent sizes x seeds
x any other parameter), how to train, which metrics to compute under which
corruptions, and the leaderboard tables with the papers' reference values.
Components (datasets, objectives, ...) are referred to by ``name`` plus
their parameters inline, e.g. ``{name: mmd, kernel: imq}``; their
parameters are checked against the plugin's own ``Params`` model in
``benchbed.suite.load``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import re

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, Strict, field_validator,
                      model_validator)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
# A method's component slots, in order, and the plugin kind each holds.
SLOTS = {"objective": "objective", "divergence": "divergence", "prior": "prior",
         "encoder": "architecture", "decoder": "architecture"}


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def kind_field(kind: str, default: Any = ..., description: str = "") -> Any:
    """A slot holding a component of ``kind``: ``{name: ..., **params}``."""
    return Field(default, description=description or f"a {kind}: name plus its parameters",
                 json_schema_extra={"x-benchbed-kind": kind})


class ComponentRef(BaseModel):
    """``name`` plus the component's own parameters (checked later)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(description="registered name of the component")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


class Reference(Spec):
    """Where a paper's number comes from."""

    paper: str = Field(description="short name of the paper, e.g. 'VIMAE'")
    where: str = Field(description="table or figure, e.g. 'Table 1'")
    section: str | None = Field(None, description="section of the paper, e.g. '§5.2'")
    page: int | None = Field(None, description="page of the paper")


def _page_text(text: str) -> str:
    """A label or header goes into Markdown tables, image captions and headings as written."""
    marked = sorted({c for c in text if c in "[]<`\n\r"})  # captions, HTML, code spans, rows
    if marked:
        shown = ", ".join("a line break" if c in "\n\r" else repr(c) for c in marked)
        raise ValueError(f"holds {shown}, which the leaderboard page would read as Markdown or HTML; "
                         "write it without them")
    return text


PageText = Annotated[str, AfterValidator(_page_text)]


class Method(Spec):
    """One method: an objective with its divergence, prior and networks."""

    label: PageText | None = Field(None, description="display name (defaults to the key)")
    objective: ComponentRef = kind_field("objective")
    divergence: ComponentRef | None = kind_field(
        "divergence", None, "D(q(z)||p(z)); omitted: the objective's default")
    prior: ComponentRef = kind_field("prior", ComponentRef(name="normal"))
    encoder: ComponentRef = kind_field("architecture", description="encoder architecture")
    decoder: ComponentRef = kind_field("architecture", description="decoder architecture")
    training: dict[str, Any] = Field(default_factory=dict,
                                     description="overrides of the suite's training section")
    # Strict keys: a quoted '40' beside a profile's 40 would survive the merge as a second entry.
    training_at: dict[Annotated[int, Strict(), Field(gt=0)], dict[str, Any]] = Field(
        default_factory=dict, description="overrides of training at one latent size, over `training`, "
                                          "e.g. {40: {epochs: 40}}: a larger code may need a larger budget")
    dataset: ComponentRef | None = kind_field(
        "dataset", None, "this method's dataset (default: the suite's), e.g. CelebA beside MNIST")
    latent_dims: list[PositiveInt] | None = Field(
        None, min_length=1, description="this method's latent sizes (default: the grid's)")
    metrics: list[str] | None = Field(
        None, description="metric keys evaluated for this method (default: all)")
    enabled: bool = Field(True, description="false: not planned (a profile can switch methods off)")


Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's moment decay: torch refuses others


class Optimiser(Spec):
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, description="sgd/rmsprop only")


class Converge(Spec):
    """Early stopping on a held-out objective: train until it stops improving.

    The last ``holdout`` training examples are set aside (not trained on). After
    each epoch the objective is evaluated on them (eval mode, a fixed seed, so
    epochs compare like with like). With L_e the held-out loss after epoch e
    and B_e the best one up to it, the run has converged at epoch e when the
    last ``patience`` epochs bought less than ``tolerance`` of the progress made
    since the first epoch:

        B_(e - patience) - B_e <= tolerance * (L_1 - B_e)

    a criterion free of the loss's scale and offset (a Gaussian decoder's
    constant, a weight on the reconstruction). L_1, not the loss at
    initialisation: the first epoch's fall would make any later change look
    negligible. ``epochs`` (or ``steps``) is the
    budget: a run that reaches it first is recorded as stopped on budget."""

    patience: int = Field(5, gt=0, description="epochs over which progress is measured")
    tolerance: float = Field(0.01, gt=0, lt=1, description="fraction of the progress since the first "
                                                           "epoch below which the last `patience` "
                                                           "epochs count as none")
    holdout: int = Field(5000, gt=0, description="training examples set aside for the held-out objective")


class Training(Spec):
    """How every run is trained (methods may override any field)."""

    epochs: int | None = Field(None, gt=0, description="passes over the training set (with "
                                                        "`converge`: the most it may take)")
    steps: int | None = Field(None, gt=0, description="optimiser steps (instead of epochs)")
    batch_size: int = Field(100, gt=0)
    optimiser: Optimiser = Field(default_factory=Optimiser)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                        description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    train_subset: int | None = Field(None, gt=0, description="use only the first N training examples")
    corruption: str | None = Field(None, description="a corruption condition applied to training inputs")
    checkpoint_every: int | None = Field(
        None, gt=0, description="also checkpoint every N steps (always at each epoch end)")
    log_every: int = Field(50, gt=0, description="steps between loss log lines and NaN checks")
    track: list[str] = Field(default_factory=list,
                             description="metric keys (trackable ones) to log during training as curves")
    track_every: int = Field(200, gt=0, description="steps between tracked-metric probes")
    probe_size: int = Field(500, gt=0, description="held-out test examples the probes see")
    converge: Converge | None = Field(None, description="stop early once a held-out objective "
                                                        "stops improving (absent: train the full budget)")

    @model_validator(mode="after")
    def _one_length(self) -> "Training":
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' and 'steps'")
        return self


class Grid(Spec):
    """The runs: every combination of these, for every method."""

    latent_dim: list[PositiveInt] = Field(description="latent sizes")
    # Derived generators multiply the seed (seed * 1_000_003 + salt), which torch takes only
    # within 64 bits; numpy and scikit-learn take 0 <= seed < 2**32: keep within both.
    seed: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(default_factory=lambda: [0], description="seeds")
    params: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="any other parameter, by dotted path into a run, e.g. "
                    "'training.optimiser.lr' or 'objective.lambda'")

    @field_validator("latent_dim", "seed")
    @classmethod
    def _non_empty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("must list at least one value")
        if len(set(v)) != len(v):
            raise ValueError("values must be distinct")
        return v

    @field_validator("params")
    @classmethod
    def _params_non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key!r} must list at least one value")
        return v


def _non_zero(v: float) -> float:
    if v == 0:
        raise ValueError("must not be 0: every value would show as 0")
    return v


NonZeroScale = Annotated[float, AfterValidator(_non_zero)]


class Column(Spec):
    """One leaderboard column: a metric value, its direction and the
    paper's numbers by method key."""

    header: PageText
    metric: str = Field(description="a key of the suite's metrics section")
    value: str = Field(description="which value the metric reports, e.g. 'accuracy/clean'")
    better: Literal["higher", "lower", "closer_to_zero", "none"] = "higher"
    scale: NonZeroScale = Field(1.0, description="multiply our value by this before showing it")
    digits: int = Field(2, ge=0, le=8)
    paper: dict[str, float | str | None] = Field(
        default_factory=dict,
        description="the paper's value per method key; a string says why there is none")


class Table(Spec):
    """A leaderboard table: rows are methods (optionally split by latent size)."""

    id: str
    title: str
    reference: Reference | None = None
    where: dict[str, Any] = Field(default_factory=dict,
                                  description="keep runs with these grid values, e.g. {latent_dim: 8} "
                                              "or {latent_dim: [10, 40]}")
    methods: list[str] | None = Field(None, description="rows, in order (default: all methods)")
    by_latent_dim: bool = Field(False, description="one row per method and latent size")
    columns: list[Column]
    figures: list[str] = Field(default_factory=list,
                               description="figure files (e.g. 'samples.png') to show per method")
    notes: list[str] = Field(default_factory=list)
    learning_curves: bool = Field(False, description="add each row's held-out objective: epochs run, "
                                  "fall per epoch at the stop and a fitted floor (benchbed.publish.curves)")
    not_run: str | None = Field(
        None, description="why this table may have no runs (e.g. data missing); shown when the "
                          "profile enables none of its methods")


class Finding(Spec):
    """A qualitative claim of a paper, checked against our numbers.

    ``holds`` lists comparisons that must all hold beyond the seed spread,
    each ``TERM OP TERM`` where a term is a method key, optionally ``@z=N``
    for one latent size, or a number; OP is one of ``< <= > >= ~`` (``~``:
    within ``tolerance``; for ``<=``/``>=`` the tolerance is a margin).
    Verdicts (t-tests over seeds, benchbed.publish.findings): reproduced, refuted,
    inconclusive (also "(n=1)" and ": under-trained"), or not run. Without ``scale`` the page shows
    the values on the scale of a table column of the same metric and value (numbers in ``holds``,
    and ``tolerance``, stay in the metric's own units).
    """

    claim: str
    source: str | None = Field(None, description="where the paper makes the claim")
    metric: str = Field(description="a key of the suite's metrics section")
    value: str = Field(description="which value of that metric")
    where: dict[str, Any] = Field(default_factory=dict)
    holds: list[str] = Field(min_length=1)
    tolerance: float = Field(0.0, ge=0)
    scale: NonZeroScale = 1.0
    digits: int = Field(2, ge=0, le=8)


class Suite(Spec):
    """A benchmark protocol."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    title: str | None = None
    citation: str = Field(description="the paper(s) this suite reproduces")
    description: str | None = None
    dataset: ComponentRef = kind_field("dataset")
    methods: dict[str, Method]
    grid: Grid
    training: Training
    corruptions: dict[str, ComponentRef] = Field(
        default_factory=dict, description="named corruption conditions, e.g. noise_0.4",
        json_schema_extra={"x-benchbed-kind-values": "corruption"})
    metrics: dict[str, ComponentRef] = Field(
        default_factory=dict, description="metrics by key",
        json_schema_extra={"x-benchbed-kind-values": "metric"})
    executor: ComponentRef | None = kind_field(
        "executor", None, description="how this suite's runs are executed, with the resources each run "
        "requests, e.g. {name: ray, num_gpus: 1}; --executor, --jobs, --address and --executor-opt on "
        "the command line override it (default: local, one run at a time)")
    leaderboards: list[Table] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    deviations: list[str] = Field(
        default_factory=list,
        description="ways this profile differs from the paper that no field shows")
    # Filled by the loader, not written by hand:
    profile: str | None = Field(None, description="the profile this suite was resolved with")

    def shown_values(self) -> set[tuple[str, str]]:
        """The (metric key, value) pairs a table column or finding reads: a non-finite one there is a failure."""
        return {(x.metric, x.value) for x in [*(c for t in self.leaderboards for c in t.columns), *self.findings]}

    @field_validator("methods")
    @classmethod
    def _some_methods(cls, v: dict[str, Method]) -> dict[str, Method]:
        if not v:
            raise ValueError("a suite needs at least one method")
        return v

    @field_validator("methods", "metrics", "corruptions")
    @classmethod
    def _keys_are_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        # Keys become file names (records, figures): keep them plain.
        for key in v:
            if not KEY_PATTERN.match(str(key)):
                raise ValueError(f"key {key!r} may use only letters, digits, '_', '.' and '-'")
        return v

    @field_validator("corruptions")
    @classmethod
    def _clean_is_reserved(cls, v: dict[str, ComponentRef]) -> dict[str, ComponentRef]:
        if "clean" in v:
            raise ValueError("'clean' is reserved for the uncorrupted condition")
        return v


def matches(record: dict[str, Any], where: dict[str, Any]) -> bool:
    """True when a record has every value a table's or a finding's ``where`` asks for (a list: any)."""
    for key, wanted in where.items():
        have = record[key] if key in ("latent_dim", "seed") else record["grid"].get(key)
        if have not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True
