"""Base classes for every pluggable part of benchbed.

A component is a class with a docstring (its documentation, shown by
``benchbed plugins --verbose``) and a ``Params`` pydantic model (its
parameters, validated from the suite). Plugins subclass one of the bases
below and hand the class to the matching ``register`` callback. The kinds,
their hooks and their bases are listed once, in ``benchbed.plugin_api.kinds.TABLE``;
``BASES`` maps each kind to its base here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from benchbed.plugin_api.kinds import KINDS, TABLE  # noqa: F401  (KINDS: public, as before)

if TYPE_CHECKING:
    from benchbed.distributions import Posterior
    from benchbed.run.model import Autoencoder, EvalContext
    from benchbed.events import OnEvent
    from benchbed.run.tasks import RunTask, TaskOutcome


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoParams(Params):
    """For components that take no parameters."""


class Component:
    """Common root: holds validated ``params``.

    ``Component(params)`` takes a ready ``Params`` instance; ``Component(**kw)``
    validates keyword arguments, which is handy in tests and notebooks.
    """

    kind: ClassVar[str] = ""  # set on each base from benchbed.plugin_api.kinds.TABLE
    Params: ClassVar[type[Params]] = NoParams

    def __init__(self, params: Params | None = None, **overrides: Any):
        super().__init__()  # cooperative, so nn.Module mixins initialise
        if params is None:
            params = self.Params(**overrides)
        elif overrides:
            params = params.model_copy(update=overrides)
        self.params = params

    @classmethod
    def summary(cls) -> str:
        """First line of the docstring, for listings."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------- priors


class Prior(Component):
    """p(z), factorised over latent dimensions.

    Subclasses implement ``sample``, ``log_prob`` (summed over dimensions, one
    value per row) and ``score`` (the gradient of ``log_prob`` in z).
    """

    def sample(self, n: int, dim: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, z: Tensor) -> Tensor:
        raise NotImplementedError


# ----------------------------------------------------------- training pieces


@dataclass
class Codes:
    """One minibatch pushed through the encoder: what losses look at."""

    x: Tensor
    posterior: "Posterior"
    z: Tensor  # a reparameterised sample from the posterior
    prior: Prior


@dataclass
class Adversary:
    """An extra player trained inside the same loop with its own optimiser.

    After each autoencoder step the trainer computes ``loss(codes)`` with the
    codes detached and takes ``steps_per_batch`` steps of an Adam optimiser
    with ``lr`` and ``betas`` over ``module``'s parameters.
    """

    name: str
    module: nn.Module
    loss: Callable[[Codes], Tensor]
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    steps_per_batch: int = 1


@dataclass
class Loss:
    """The scalar to minimise and the named terms to log (floats).

    Objectives may hand back the ``codes`` they computed, so adversaries
    train on them without a second encoder pass.
    """

    total: Tensor
    terms: dict[str, float] = field(default_factory=dict)
    codes: Codes | None = None


class Divergence(Component, nn.Module):
    """A minibatch divergence between q(z) (the codes) and p(z).

    ``forward(codes)`` returns a scalar tensor differentiable in ``codes.z``.
    ``setup(latent_dim)`` is called once before training; divergences that own
    networks (a discriminator) build them there and return them from
    ``adversaries()``. ``term_name`` is the name objectives log the value
    under (in the training log and ``curves.csv``).
    """

    term_name: ClassVar[str] = "div"

    def setup(self, latent_dim: int) -> None:
        pass

    def forward(self, codes: Codes) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adversaries(self) -> list[Adversary]:
        return []


ANY_DIVERGENCE = "any"
"""``Objective.accepts_divergence`` for an objective that takes every registered divergence."""


class Objective(Component, nn.Module):
    """The autoencoder's training loss.

    ``accepts_divergence`` is the objective's contract with the suite: ``None``
    (it takes no divergence, the default), ``ANY_DIVERGENCE`` (any registered
    one) or a frozenset of divergence names (a method named after the MMD
    takes the MMD only). ``default_divergence`` is the divergence used when
    the method gives none; it must be accepted. Suites are checked against
    this before anything trains (``divergence_refusal``); an objective whose
    acceptance depends on more than the name overrides that classmethod.

    ``bind`` hands the objective its divergence; ``loss(model, x)`` returns a
    ``Loss``. Objectives and divergences are ``nn.Module``\\ s, so any network
    they own is saved and restored with the run's checkpoint.
    """

    accepts_divergence: ClassVar[frozenset[str] | str | None] = None
    default_divergence: ClassVar[dict[str, Any] | None] = None

    divergence: Divergence | None

    @classmethod
    def accepted_divergences(cls) -> frozenset[str] | str | None:
        """``accepts_divergence``; objectives written before it existed declared
        only a ``default_divergence``, and take any divergence."""
        if cls.accepts_divergence is None and cls.default_divergence is not None:
            return ANY_DIVERGENCE
        return cls.accepts_divergence

    @classmethod
    def divergence_refusal(cls, name: str | None) -> str | None:
        """Why this objective cannot train with divergence ``name`` (``None``: no
        divergence), as the end of a sentence naming the objective; ``None`` if it can."""
        accepted = cls.accepted_divergences()
        if accepted is None:
            return None if name is None else f"takes no divergence (got {name!r}); drop it from the method"
        if name is None:
            return f"needs a divergence: {cls.describe_divergence()}"
        if accepted == ANY_DIVERGENCE or name in accepted:
            return None
        return f"takes only the divergence {_names(accepted)}, not {name!r}"

    @classmethod
    def describe_divergence(cls) -> str:
        """Which divergences it takes, for listings: "none", "any (default 'mmd')",
        "'mmd' only (default 'mmd')"."""
        accepted = cls.accepted_divergences()
        if accepted is None:
            return "none"
        default = cls.default_divergence
        which = "any" if accepted == ANY_DIVERGENCE else f"{_names(accepted)} only"
        return which + (f" (default {default['name']!r})" if default else ", none by default")

    def bind(self, divergence: Divergence | None, latent_dim: int) -> None:
        if (divergence is None) != (self.accepted_divergences() is None):
            name = None if divergence is None else type(divergence).__name__
            raise ValueError(f"{type(self).__name__} {self.divergence_refusal(name)}")
        self.divergence = divergence
        if divergence is not None:
            divergence.setup(latent_dim)

    def loss(self, model: "Autoencoder", x: Tensor) -> Loss:  # pragma: no cover
        raise NotImplementedError

    def adversaries(self) -> list[Adversary]:
        return self.divergence.adversaries() if self.divergence is not None else []


def _names(names: frozenset[str]) -> str:
    return " or ".join(repr(n) for n in sorted(names))


# ------------------------------------------------------------- architectures


class Encoder(nn.Module):
    """x -> Posterior. ``latent_dim`` is set by the builder."""

    latent_dim: int

    def forward(self, x: Tensor) -> "Posterior":  # pragma: no cover - abstract
        raise NotImplementedError


class Decoder(nn.Module):
    """p(x|z) with an exact per-example log-likelihood.

    ``log_prob(x, z)`` returns log p(x|z) summed over pixels, one value per
    row (nats); ``sample(z)`` draws x ~ p(x|z); ``mean(z)`` is the picture to
    show for a code (the mean, or a greedy decode for autoregressive ones).

    ``shows_samples``: True where E[x|z] is intractable (autoregressive
    decoders). Ancestral samples and Markov-chain states are then draws
    x ~ p(x|z), as the papers show them, not ``mean(z)``: a greedy decode of
    a PixelCNN is mostly blank, and a classifier would see one class.
    """

    shows_samples: bool = False

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def mean(self, z: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class Architecture(Component):
    """Builds networks for a data shape (C, H, W) and a latent size.

    ``provides`` says which of "encoder" and "decoder" this architecture can
    build; a suite naming it in the other slot is rejected at validation.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"encoder", "decoder"})

    def build_encoder(self, shape: tuple[int, ...], latent_dim: int) -> Encoder:
        raise NotImplementedError(f"{type(self).__name__} builds no encoder")

    def build_decoder(self, shape: tuple[int, ...], latent_dim: int) -> Decoder:
        raise NotImplementedError(f"{type(self).__name__} builds no decoder")


# -------------------------------------------------------------------- data


@dataclass
class Split:
    """A whole split held as tensors: x float in the dataset's value range,
    shape (N, C, H, W); y int64 class labels, or None."""

    x: Tensor
    y: Tensor | None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class DatasetInfo:
    shape: tuple[int, int, int]
    value_range: tuple[float, float]
    num_classes: int | None
    splits: tuple[str, ...]
    binary: bool = False  # True when every value is 0 or 1
    # Names of the ground-truth factors of variation the dataset offers through
    # ``Dataset.factors`` (None: none; metrics with ``needs_factors`` refuse it).
    factors: tuple[str, ...] | None = None


@dataclass
class Factors:
    """Ground-truth factors of variation of a split, row-aligned with its ``x``.

    ``classes[i, k]`` (0 .. sizes[k]-1) is the index of factor k's value in
    example i for a discrete factor, or of its bin for a continuous one;
    ``values[i, k]`` is the value itself (float). Scores that need
    discrete factors read ``classes``, regressions read ``values``.
    """

    names: tuple[str, ...]
    classes: Tensor  # int64 (N, K)
    values: Tensor  # float64 (N, K)
    sizes: tuple[int, ...]


class Dataset(Component):
    """Labelled images as in-memory tensors.

    ``info()`` must be cheap (no loading). ``load(split)`` returns a ``Split``.
    ``train_view(x, generator)`` maps the stored training tensor to what one
    epoch sees (identity by default; dynamic binarisation draws here).
    """

    def info(self) -> DatasetInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, split: str) -> Split:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_view(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x

    def factors(self, split: str) -> Factors | None:
        """The split's ground-truth factors (row-aligned with ``load(split).x``),
        or None for a dataset without them; list their names in ``info().factors``."""
        return None


class Corruption(Component):
    """A seeded corruption of a batch of inputs in [0, 1]: returns the corrupted batch, same shape.
    benchbed hands it a copy, so changing ``x`` in place cannot reach the clean data."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:  # pragma: no cover
        raise NotImplementedError


# ------------------------------------------------------------------ metrics


@dataclass
class MetricResult:
    """Numbers by name (floats) and figure files written (paths relative to
    the run folder)."""

    values: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


class Metric(Component):
    """Evaluates a trained run.

    ``evaluate(ctx)`` gets an ``EvalContext`` (model, data, corruptions,
    folders, seed) and returns a ``MetricResult``. Metrics that can also be
    tracked during training (curves) implement ``probe(model, x)`` returning
    floats; the trainer calls it every ``training.track_every`` steps.
    """

    trackable: ClassVar[bool] = False
    # True: reads the dataset's ground-truth factors (``Dataset.factors``);
    # ``validate`` refuses it on a dataset whose info() lists none.
    needs_factors: ClassVar[bool] = False

    def evaluate(self, ctx: "EvalContext") -> MetricResult:  # pragma: no cover
        raise NotImplementedError

    def produces(self) -> list[str] | None:
        """The value names ``evaluate`` returns with these params (e.g.
        ``accuracy/clean`` for each condition), so a suite naming another is
        refused before training. None (the default): not declared, not checked."""
        return None

    def figures_written(self, corruptions: list[str]) -> list[str] | None:
        """The figure files (names, e.g. ``samples.png``) ``evaluate`` writes,
        given the suite's corruption names; None (the default): not declared."""
        return None

    def probe(self, model: "Autoencoder", x: Tensor) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} cannot be tracked during training")

    def conditions_used(self, available: Sequence[str]) -> list[str]:
        """Which of the suite's corruptions (``available``) this metric evaluates
        under. They are part of its result's identity: changing one re-evaluates
        it. Default: those named in a ``conditions`` parameter ("clean" is none)."""
        named = getattr(self.params, "conditions", None) or []
        return [c for c in named if c in available]


# ---------------------------------------------------------------- executors


class Executor(Component):
    """Runs tasks and yields their outcomes as they finish.

    ``run(tasks, on_event)`` must call ``benchbed.tasks.execute(task, on_event)``
    for each task somewhere (a process, a cluster worker) and yield each
    ``TaskOutcome``. Executors never write the store: the driver does.
    ``on_event`` receives progress events (``benchbed.events``); executors
    forward the ones ``execute`` emits when they can, unchanged.

    Options are the executor's ``Params``, given in the suite's ``executor``
    or with ``benchbed run --executor-opt KEY=VALUE``. ``cli_shorthands``
    maps command-line flags to params (``{"jobs": "jobs"}`` gives ``--jobs N``);
    a flag is shown by ``benchbed run --help`` and applies to whichever
    executor declares it.
    """

    cli_shorthands: ClassVar[dict[str, str]] = {}

    def threads_per_task(self) -> int:
        """torch threads each run gets (all cores, when runs go one by one)."""
        return max(1, os.cpu_count() or 1)

    def run(self, tasks: Sequence["RunTask"],
            on_event: "OnEvent") -> Iterator["TaskOutcome"]:  # pragma: no cover
        raise NotImplementedError


BASES: dict[str, type[Component]] = {kind.name: globals()[kind.base] for kind in TABLE}
for _name, _base in BASES.items():
    _base.kind = _name
