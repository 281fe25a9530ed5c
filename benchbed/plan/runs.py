"""Expanding a suite into runs, each with a fully resolved config and a key.

A run's key is a hash of everything that changes what training produces:
the dataset, the method's components and parameters (with the objective's
default divergence filled in), the latent size, the seed, the training
settings, and the versions of the code that provides those components.
Metrics are not part of the key: adding a metric to a suite evaluates
existing runs without retraining them.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from benchbed import RESULTS_VERSION
from benchbed.errors import BenchbedError, UnknownComponent, did_you_mean
from benchbed.plugin_api.registry import BUILTIN_DISTRIBUTION, LOCAL_MODULE, Registry
from benchbed.publish.findings import parse as parse_comparison, term_methods
from benchbed.suite.protocol import SLOTS, Suite, Training, matches
from benchbed.suite.load import Problem, divergence_refusal
from benchbed.suite.source import Locations, merge_dicts

# Settings that change logging only, not what training computes.
NOT_IN_KEY = ("log_every",)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_of(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


@dataclass
class PlannedRun:
    suite: str
    profile: str | None
    method: str
    label: str
    latent_dim: int
    seed: int
    grid: dict[str, Any]
    config: dict[str, Any]  # what training needs (the key hashes this)
    key: str
    evaluation: dict[str, Any] = field(default_factory=dict)  # metrics + corruptions

    @property
    def name(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.grid.items())
        return f"{self.method} z={self.latent_dim} seed={self.seed}{extra}"

    @property
    def slug(self) -> str:
        """A file-name-safe name for the run, unique within its suite."""
        extra = "".join(f"__{_safe(k)}={_safe(v)}" for k, v in self.grid.items())
        return f"{self.method}__z{self.latent_dim}__s{self.seed}{extra}"


def _safe(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", str(value).replace(".", "-") if isinstance(value, str)
                  else str(value))


class PlanError(BenchbedError):
    def __init__(self, path: tuple[Any, ...], message: str):
        self.path = path
        super().__init__(message)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[path[-1]] = value


def _plugin_version(registry: Registry, kind: str, name: str) -> dict[str, str]:
    """{distribution: version} of the plugin providing a component; {} for benchbed's own, which
    count once, as ``RESULTS_VERSION``. A local module counts by its name and a digest of its source,
    so an edit to it changes what it identifies."""
    source = registry.get(kind, name).source
    if source.distribution == LOCAL_MODULE:
        return {f"{LOCAL_MODULE} {source.plugin}": source.version}
    return {} if source.distribution == BUILTIN_DISTRIBUTION else {source.distribution: source.version}


def code_versions(registry: Registry, method: dict[str, Any], dataset: str) -> dict[str, str]:
    """Versions of the distributions that provide this run's components (its dataset's too).

    benchbed's own built-ins count as ``RESULTS_VERSION``, not the package
    version: a release that changes no result keeps every record valid."""
    versions = {BUILTIN_DISTRIBUTION: RESULTS_VERSION, **_plugin_version(registry, "dataset", dataset)}
    for slot, kind in SLOTS.items():
        if method.get(slot):
            versions.update(_plugin_version(registry, kind, method[slot]["name"]))
    return versions


def resolve_component(kind: str, ref: dict[str, Any], registry: Registry, path: tuple[Any, ...] = (),
                      what: str = "") -> dict[str, Any]:
    """``{"name": ..., **params}`` with every default filled in, so that a changed
    default changes the identity of what uses it; a bad parameter: ``PlanError`` at ``path``."""
    cls = registry.get(kind, ref["name"]).cls
    try:
        params = cls.Params.model_validate({k: v for k, v in ref.items() if k != "name"})
    except ValidationError as exc:
        raise PlanError(path, f"{what or kind} {ref['name']!r}: {_first_error(exc)}") from None
    return {"name": ref["name"], **params.model_dump(mode="json", by_alias=True)}


def resolve_method(suite: Suite, key: str, registry: Registry, grid_params: dict[str, Any],
                   latent_dim: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The method's component dicts and training dict (with the method's overrides
    at ``latent_dim``), with grid values applied."""
    spec = suite.methods[key]
    method: dict[str, Any] = {slot: (getattr(spec, slot).as_dict() if getattr(spec, slot) else None)
                              for slot in SLOTS}
    objective_cls = registry.get("objective", method["objective"]["name"]).cls
    if method["divergence"] is None and objective_cls.default_divergence is not None:
        method["divergence"] = copy.deepcopy(dict(objective_cls.default_divergence))
    training = merge_dicts(suite.training.model_dump(mode="json"), spec.training)
    training = merge_dicts(training, spec.training_at.get(latent_dim, {}))
    for dotted_path, value in grid_params.items():
        head, *rest = dotted_path.split(".")
        if not rest or head not in ("training", *SLOTS):
            raise PlanError(("grid", "params", dotted_path),
                            f"grid path {dotted_path!r} must start with 'training.' or one of "
                            f"{', '.join(s + '.' for s in SLOTS)}")
        target = training if head == "training" else method[head]
        if target is None:
            raise PlanError(("grid", "params", dotted_path),
                            f"method {key!r} has no {head} to set {'.'.join(rest)!r} on")
        _set_path(target, rest, value)
    divergence_name = method["divergence"]["name"] if method["divergence"] else None
    refusal = divergence_refusal(registry, method["objective"]["name"], divergence_name)
    if refusal is not None:  # a grid's divergence.name (the suite's own are checked on loading)
        raise PlanError(("methods", key, "divergence" if divergence_name else "objective"), refusal)
    for slot, kind in SLOTS.items():  # every parameter stored (defaults too): the key changes with a default
        if method[slot] is not None:
            method[slot] = resolve_component(kind, method[slot], registry, ("methods", key, slot), slot)
    try:
        training = Training.model_validate(training).model_dump(mode="json")
    except ValidationError as exc:
        raise PlanError(("methods", key, "training"), f"training.{_first_error(exc)}") from None
    return method, training


def resolve_evaluation(suite: Suite, wanted: list[str], registry: Registry) -> dict[str, Any]:
    """The metrics a method is evaluated with (defaults filled in), the suite's
    corruptions, and which corruptions each metric evaluates under: a metric's
    result is identified by its spec and those (``store.metric_hash``)."""
    corruptions = {k: resolve_component("corruption", ref.as_dict(), registry, ("corruptions", k))
                   for k, ref in suite.corruptions.items()}
    metrics, conditions, code = {}, {}, {}
    for key, ref in suite.metrics.items():
        if key in wanted:
            metrics[key] = resolve_component("metric", ref.as_dict(), registry, ("metrics", key))
            conditions[key] = registry.create("metric", ref.as_dict()).conditions_used(list(corruptions))
            # A plugin metric's or corruption's version: an edit or release re-evaluates (not for built-ins,
            # whose RESULTS_VERSION is in every run key, so that their hashes stay as they were).
            versions = _plugin_version(registry, "metric", ref.name)
            for condition in conditions[key]:
                versions.update(_plugin_version(registry, "corruption", corruptions[condition]["name"]))
            if versions:
                code[key] = versions
    return {"metrics": metrics, "corruptions": corruptions, "conditions": conditions,
            **({"code": code} if code else {})}


def plan(suite: Suite, registry: Registry) -> list[PlannedRun]:
    """Every run of the suite, in a stable order (method, latent size, seed, grid)."""
    grid_values = list(itertools.product(*suite.grid.params.values())) or [()]
    runs = []
    for method_key, spec in suite.methods.items():
        if not spec.enabled:
            continue
        path = ("methods", method_key, "dataset") if spec.dataset else ("dataset",)
        dataset = resolve_component("dataset", (spec.dataset or suite.dataset).as_dict(), registry, path)
        wanted = spec.metrics if spec.metrics is not None else list(suite.metrics)
        evaluation = resolve_evaluation(suite, wanted, registry)
        for latent_dim, seed, values in itertools.product(spec.latent_dims or suite.grid.latent_dim,
                                                          suite.grid.seed, grid_values):
            grid = dict(zip(suite.grid.params, values))
            try:
                method, training = resolve_method(suite, method_key, registry, grid, latent_dim)
            except PlanError as exc:
                if not grid:
                    raise
                resolve_method(suite, method_key, registry, {}, latent_dim)  # fine without the grid?
                raise PlanError(("grid", "params"), f"with {grid}: {exc}") from None
            config = {"dataset": dataset, "method": method, "latent_dim": latent_dim, "seed": seed,
                      "training": training, "code": code_versions(registry, method, dataset["name"])}
            # An absent `converge` stays out of the key, so fixed-budget runs
            # keep the keys they had before early stopping existed.
            keyed = {k: v for k, v in training.items()
                     if k not in NOT_IN_KEY and not (k == "converge" and v is None)}
            runs.append(PlannedRun(
                suite=suite.name, profile=suite.profile, method=method_key, label=spec.label or method_key,
                latent_dim=latent_dim, seed=seed, grid=grid, config=config,
                key=hash_of({**config, "training": keyed}), evaluation=evaluation))
    return runs


def plan_checked(suite: Suite, registry: Registry, locs: Locations
                 ) -> tuple[list[PlannedRun], list[Problem]]:
    """The runs, and the problems that only show when runs are built (grid
    paths, overrides, datasets without a split, two methods with one key)."""
    try:
        runs = plan(suite, registry)
    except PlanError as exc:
        return [], [Problem.at(locs, exc.path, str(exc))]
    except UnknownComponent as exc:
        return [], [Problem.at(locs, (), str(exc))]
    problems: list[Problem] = []
    datasets = [(("dataset",), suite.dataset)] + [
        (("methods", k, "dataset"), m.dataset) for k, m in suite.methods.items() if m.dataset]
    for path, ref in datasets:
        try:
            info = registry.create("dataset", ref.as_dict()).info()
        except BenchbedError as exc:
            problems.append(Problem.at(locs, path, str(exc)))
            continue
        problems += [Problem.at(locs, path, f"dataset {ref.name!r} has no {split!r} split "
                                            f"(it has: {', '.join(info.splits)})")
                     for split in ("train", "test") if split not in info.splits]
    problems += _network_problems(runs, registry, locs)
    keys: dict[str, str] = {}
    for run in runs:
        if run.key in keys:
            problems.append(Problem.at(locs, ("methods", run.method),
                                       f"identical to {keys[run.key]} (same config, same key)"))
        keys[run.key] = run.name
    return runs, problems


def _network_problems(runs: list[PlannedRun], registry: Registry, locs: Locations) -> list[Problem]:
    """Encoders and decoders that cannot be built for their dataset's images (an architecture
    written for 28x28 on 8x8 digits): built once per distinct spec on torch's meta device, which
    allocates nothing, so that every run does not fail the same way after the suite is accepted."""
    import torch  # the plugins have imported it already

    problems, seen, infos = [], set(), {}
    for run in runs:
        dataset = json.dumps(run.config["dataset"], sort_keys=True)
        for role in ("encoder", "decoder"):
            spec = run.config["method"][role]
            key = (run.method, role, json.dumps(spec, sort_keys=True), dataset, run.latent_dim)
            if key in seen:
                continue
            seen.add(key)
            try:
                if dataset not in infos:
                    infos[dataset] = registry.create("dataset", run.config["dataset"]).info()
                architecture = registry.create("architecture", spec)
                with torch.device("meta"):
                    getattr(architecture, f"build_{role}")(infos[dataset].shape, run.latent_dim)
            except ValueError as exc:  # the architecture's own refusal
                problems.append(Problem.at(locs, ("methods", run.method, role), str(exc)))
            except Exception:  # anything else shows when the run builds it for real
                continue
    return problems


def _listed(values: Any) -> str:
    """Distinct values, numbers in order first."""
    def order(v: Any) -> tuple:
        return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))
    return ", ".join(dict.fromkeys(map(str, sorted(values, key=order))))


def selection_problems(suite: Suite, runs: list[PlannedRun], locs: Locations,
                       elsewhere: list[PlannedRun] = ()) -> list[Problem]:
    """``where`` values, ``@z=`` terms and columns that no planned run fills: they would leave a table
    or a finding empty in silence. A value another profile plans (``elsewhere``) is fine: a profile may
    shrink the grid. Tables and findings whose methods this profile does not run are skipped."""
    problems: list[Problem] = []

    def value(run: PlannedRun, key: str) -> Any:
        return getattr(run, key) if key in ("latent_dim", "seed") else run.grid.get(key)

    def sizes(method: str, among: list[PlannedRun]) -> list[int]:
        return [r.latent_dim for r in among if r.method == method]

    def unmatched(base: tuple[Any, ...], methods: Any, where: dict[str, Any], owner: str) -> None:
        for key, wanted in where.items():
            have = [value(r, key) for r in runs if r.method in methods]
            also = [value(r, key) for r in elsewhere if r.method in methods]
            for i, v in enumerate(wanted if isinstance(wanted, list) else [wanted]):
                if v not in have and v not in also:
                    path = base + ("where", key) + ((i,) if isinstance(wanted, list) else ())
                    close = did_you_mean(v, sorted({h for h in have if isinstance(h, str)})
                                         ) if isinstance(v, str) else ""
                    problems.append(Problem.at(locs, path, f"{key} {v!r} matches no planned run of this "
                                                           f"{owner}{close} (they have: {_listed(have)})"))

    for key, spec in suite.methods.items():
        for size in spec.training_at if spec.enabled else ():
            if size not in sizes(key, runs) + sizes(key, elsewhere):
                problems.append(Problem.at(locs, ("methods", key, "training_at", size),
                                           f"method {key!r} has no planned run at latent size {size} "
                                           f"(it has: {_listed(sizes(key, runs))})"))
    for t, table in enumerate(suite.leaderboards):
        base, methods = ("leaderboards", t), table.methods or list(suite.methods)
        if not any(r.method in methods for r in runs):
            continue
        unmatched(base, methods, table.where, "table")
        kept = [r for r in runs if r.method in methods
                and matches({"latent_dim": r.latent_dim, "seed": r.seed, "grid": r.grid}, table.where)]
        computed = {m for r in kept for m in r.evaluation["metrics"]}
        at = "".join(f" at {k} = {v}" for k, v in table.where.items())
        for c, column in enumerate(table.columns):
            if kept and column.metric not in computed:
                problems.append(Problem.at(locs, base + ("columns", c, "metric"),
                                           f"no method of this table computes metric {column.metric!r}{at} "
                                           f"(they compute: {_listed(computed) or 'nothing'})"))
    for f, finding in enumerate(suite.findings):
        base = ("findings", f)
        terms = [(i, term) for i, text in enumerate(finding.holds)
                 for term in parse_comparison(text)[::2] if term_methods(term) is not None]
        methods = {term_methods(term) for _, term in terms}
        if not any(r.method in methods for r in runs):
            continue
        unmatched(base, methods, finding.where, "finding")
        for i, term in terms:
            method, _, dim = term.partition("@z=")
            dims = sizes(method, runs)
            if dim and dims and int(dim) not in dims + sizes(method, elsewhere):
                problems.append(Problem.at(locs, base + ("holds", i),
                                           f"{term!r}: method {method!r} has no planned run with latent_dim "
                                           f"{dim} (it has: {_listed(dims)})"))
    return problems
