"""Checking a suite completely, without training.

``load_suite`` validates the YAML (``extends`` and the profile applied) with the ``Suite`` model,
each component's parameters with its plugin's ``Params``, and every cross reference;
``benchbed.plan.loaded.load`` adds what only planning shows. Every problem names the file, line,
field path and bad value, and suggests close names.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from benchbed.errors import BenchbedError, UnknownComponent, did_you_mean
from benchbed.publish.findings import BadComparison, term_methods
from benchbed.publish.findings import parse as parse_comparison
from benchbed.plugin_api.registry import Registry, get_registry
from benchbed.suite.protocol import ComponentRef, Method, Suite, Training
from benchbed.suite.source import SOURCE_KEYS, Locations, apply_profile, load_raw, merge_dicts


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line"
    path: str  # dotted field path
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path or '(suite)'}: {self.message}"


class SuiteInvalid(BenchbedError):
    def __init__(self, file: str, problems: list[Problem], profile: str | None = None):
        self.file, self.problems, self.profile = file, problems, profile
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        shown = f" (profile {profile})" if profile else ""
        super().__init__(f"{file}{shown}: {len(problems)} {noun}:\n{lines}")


def dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ----------------------------------------------------------- pydantic errors


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        names.append(field.alias or name)
        if field.alias:
            names.append(name)
    return names


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow a pydantic error location through the model's annotations."""
    current: Any = root
    for part in loc:
        candidates = _unwrap(current)
        nxt = None
        for cand in candidates:
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                field = cand.model_fields.get(part) or next(
                    (f for f in cand.model_fields.values() if f.alias == part), None)
                if field is not None:
                    nxt = field.annotation
                    break
            origin = typing.get_origin(cand)
            if origin in (dict, list, tuple) and typing.get_args(cand):
                nxt = typing.get_args(cand)[-1 if origin is dict else 0]
                break
        if nxt is None:
            return None
        current = nxt
    models = [c for c in _unwrap(current) if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if models else None


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def convert_errors(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...],
                   locs: Locations) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            key = loc[-1]
            parent = _model_at(model, loc[:-1])
            allowed = _allowed_keys(parent) if parent else []
            if parent is Suite:  # keys the source reads before the model sees the suite
                allowed = [k for k in allowed if k != "profile"] + list(SOURCE_KEYS)
            msg = (f"unknown key {key!r}{did_you_mean(str(key), allowed)}"
                   + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
        elif kind == "missing":
            msg = "required but missing"
        elif kind in ("literal_error", "enum"):
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"{value!r} is not one of {expected}{did_you_mean(str(value), _quoted(expected))}"
        else:
            shown = f" (got {value!r})" if not isinstance(value, (dict, list)) else ""
            msg = err["msg"].removeprefix("Value error, ") + shown
        path = prefix + loc
        where = locs.find(path)
        # A section-wide rule ("give exactly one of 'epochs' and 'steps'"): point
        # at the first named field written there.
        written = [path + (name,) for name in _quoted(msg) if path + (name,) in locs]
        if kind == "value_error" and written:
            where = locs[written[0]]
        problems.append(Problem(str(where) if where else "?", dotted(path), msg))
    return problems


# ------------------------------------------------------------ component refs


def component_slots(suite: Suite) -> Iterable[tuple[str, tuple[Any, ...], ComponentRef]]:
    """Every (kind, path, ref) in a suite."""
    yield "dataset", ("dataset",), suite.dataset
    for key, method in suite.methods.items():
        base = ("methods", key)
        if method.dataset is not None:
            yield "dataset", base + ("dataset",), method.dataset
        yield "objective", base + ("objective",), method.objective
        if method.divergence is not None:
            yield "divergence", base + ("divergence",), method.divergence
        yield "prior", base + ("prior",), method.prior
        yield "architecture", base + ("encoder",), method.encoder
        yield "architecture", base + ("decoder",), method.decoder
    for key, ref in suite.corruptions.items():
        yield "corruption", ("corruptions", key), ref
    for key, ref in suite.metrics.items():
        yield "metric", ("metrics", key), ref
    if suite.executor is not None:
        yield "executor", ("executor",), suite.executor


def check_component(registry: Registry, kind: str, path: tuple[Any, ...], ref: ComponentRef,
                    locs: Locations) -> list[Problem]:
    try:
        cls = registry.get(kind, ref.name).cls
    except UnknownComponent as exc:
        where = locs.find(path + ("name",))
        return [Problem(str(where), dotted(path + ("name",)), str(exc))]
    try:
        cls.Params.model_validate(ref.params)
    except ValidationError as exc:
        return convert_errors(exc, cls.Params, path, locs)
    return []


# ------------------------------------------------------------ the whole check


def _problem(locs: Locations, path: tuple[Any, ...], message: str) -> Problem:
    return Problem(str(locs.find(path)), dotted(path), message)


def _kind(value: Any) -> str:
    """A value's kind as YAML shows it (int and float are both numbers)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "a mapping"


def where_problems(suite: Suite, where: dict[str, Any], base: tuple[Any, ...],
                   locs: Locations) -> list[Problem]:
    """A ``where`` value of the wrong kind would silently match nothing."""
    problems = []
    for key, wanted in where.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        path = base + ("where", key)
        if not values:
            problems.append(_problem(locs, path, "an empty list matches no run"))
        if key in ("latent_dim", "seed"):
            for i, v in enumerate(values):
                at = path + (i,) if isinstance(wanted, list) else path
                if isinstance(v, bool) or not isinstance(v, int):
                    problems.append(_problem(locs, at, f"{key} must be a whole number (or a list of "
                                                       f"them), got {v!r}"))
                elif key == "latent_dim" and v < 1:
                    problems.append(_problem(locs, at, f"latent_dim must be positive, got {v}: "
                                                       "it would match no run"))
        elif key in suite.grid.params:
            kinds = sorted({_kind(v) for v in suite.grid.params[key]})
            for i, v in enumerate(values):
                if _kind(v) not in kinds:
                    at = path + (i,) if isinstance(wanted, list) else path
                    shown = ", ".join(repr(g) for g in suite.grid.params[key])
                    problems.append(_problem(locs, at, f"{v!r} is {_kind(v)}, but the grid's "
                                                       f"{key} values are {' or '.join(kinds)} "
                                                       f"({shown}): it would match no run"))
    return problems


def _declared(suite: Suite, registry: Registry, ask: str, *args: Any) -> dict[str, list[str] | None]:
    """Metric key -> what its ``produces()`` or ``figures_written(...)`` declares (None: nothing,
    or the metric is unknown or cannot say: reported elsewhere)."""
    out: dict[str, list[str] | None] = {}
    for key, ref in suite.metrics.items():
        try:
            cls = registry.get("metric", ref.name).cls
            names = getattr(cls(cls.Params.model_validate(ref.params)), ask)(*args)
            out[key] = None if names is None else [str(n) for n in names]
        except Exception:
            out[key] = None
    return out


def produced_values(suite: Suite, registry: Registry) -> dict[str, list[str] | None]:
    return _declared(suite, registry, "produces")


def written_figures(suite: Suite, registry: Registry) -> list[str] | None:
    """Every figure file the suite's metrics write (None: some metric does not say)."""
    written = _declared(suite, registry, "figures_written", list(suite.corruptions)).values()
    return None if None in written else list(dict.fromkeys(n for names in written for n in names))


def value_problem(suite: Suite, produced: dict[str, list[str] | None], metric: str, value: str,
                  path: tuple[Any, ...], locs: Locations) -> list[Problem]:
    names = produced.get(metric)
    if names is None or value in names:
        return []
    gives = ", ".join(names) if names else "no values, only figures"
    return [_problem(locs, path, f"metric {metric!r} ({suite.metrics[metric].name}) gives no value "
                                 f"{value!r}{did_you_mean(value, names)} (it gives: {gives})")]


def _dotted_keys(mapping: dict[str, Any], prefix: str) -> list[str]:
    """The dotted paths of a nested mapping's leaves, e.g. training.optimiser.lr."""
    out = []
    for key, value in mapping.items():
        path = f"{prefix}.{key}"
        out += _dotted_keys(value, path) if isinstance(value, dict) and value else [path]
    return out


def check_references(suite: Suite, registry: Registry, locs: Locations) -> list[Problem]:
    problems: list[Problem] = []
    produced = produced_values(suite, registry)
    conditions = ["clean", *suite.corruptions]
    metric_keys = list(suite.metrics)
    method_keys = list(suite.methods)
    training_sets: list = []

    for key, ref in suite.metrics.items():
        for i, cond in enumerate(ref.params.get("conditions") or []):
            if cond not in conditions:
                problems.append(_problem(locs, ("metrics", key, "conditions", i),
                                         f"unknown condition {cond!r}{did_you_mean(cond, conditions)}"
                                         f" (conditions: {', '.join(conditions)})"))

    for key, method in suite.methods.items():
        for i, name in enumerate(method.metrics or []):
            if name not in metric_keys:
                problems.append(_problem(locs, ("methods", key, "metrics", i),
                                         f"unknown metric {name!r}{did_you_mean(name, metric_keys)}"))
        for slot, need in (("encoder", "encoder"), ("decoder", "decoder")):
            ref = getattr(method, slot)
            try:
                cls = registry.get("architecture", ref.name).cls
            except UnknownComponent:
                continue
            if need not in cls.provides:
                problems.append(_problem(locs, ("methods", key, slot, "name"),
                                         f"architecture {ref.name!r} builds no {need} "
                                         f"(it provides: {', '.join(sorted(cls.provides))})"))
        training_valid = True
        if method.training:
            merged = merge_dicts(suite.training.model_dump(), method.training)
            try:
                training = Training.model_validate(merged)
            except ValidationError as exc:
                problems += convert_errors(exc, Training, ("methods", key, "training"), locs)
                training_valid = False
            else:
                training_sets.append((("methods", key, "training"), training, key))
        else:
            training_sets.append((("training",), suite.training, key))
        # Whether a size has runs is checked with the plan (another profile may run it).
        for size, override in method.training_at.items():
            path = ("methods", key, "training_at", size)
            for field in _dotted_keys(override, "training"):
                clash = [p for p in suite.grid.params if p == field or p.startswith(field + ".")
                         or field.startswith(p + ".")]
                if clash:
                    problems.append(_problem(locs, path, f"sets {field}, which grid.params also sets "
                                                         f"({clash[0]}): the grid's values would win"))
            if not training_valid:
                continue  # reported once, where it is written
            merged = merge_dicts(merge_dicts(suite.training.model_dump(), method.training), override)
            try:
                training = Training.model_validate(merged)
            except ValidationError as exc:
                problems += convert_errors(exc, Training, path, locs)
            else:
                training_sets.append((path, training, key))

    for path, training, method_key in training_sets:
        spec = suite.methods[method_key]
        written = [(path, spec.training_at[path[3]])] if path[2:3] == ("training_at",) else []
        written += [(("methods", method_key, "training"), spec.training)]

        def at(field: str) -> tuple[Any, ...]:
            # A setting is reported where it is written: at a latent size, the method's section, the suite's.
            return next((p for p, own in written if field in own), ("training",)) + (field,)

        if training.corruption is not None and training.corruption not in suite.corruptions:
            problems.append(_problem(locs, at("corruption"),
                                     f"unknown condition {training.corruption!r}"
                                     f"{did_you_mean(training.corruption, list(suite.corruptions))}"))
        evaluated = suite.methods[method_key].metrics
        for i, name in enumerate(training.track):
            where = at("track") + (i,)
            if name not in metric_keys:
                problems.append(_problem(locs, where,
                                         f"unknown metric {name!r}{did_you_mean(name, metric_keys)}"))
            elif evaluated is not None and name not in evaluated:
                problems.append(_problem(locs, where,
                                         f"tracks metric {name!r}, which method {method_key!r} does "
                                         f"not evaluate (its metrics: {', '.join(evaluated)})"))
            else:
                try:
                    cls = registry.get("metric", suite.metrics[name].name).cls
                except UnknownComponent:
                    continue
                if not cls.trackable:
                    problems.append(_problem(locs, where,
                                             f"metric {name!r} ({suite.metrics[name].name}) cannot "
                                             "be tracked during training"))

    def metric_value_problems(metric: str, value: str, base: tuple[Any, ...]) -> list[Problem]:
        """A table column's or a finding's metric key and the value it reads."""
        if metric not in metric_keys:
            return [_problem(locs, base + ("metric",),
                             f"unknown metric {metric!r}{did_you_mean(metric, metric_keys)}")]
        return value_problem(suite, produced, metric, value, base + ("value",), locs)

    grid_keys = ["latent_dim", "seed", *suite.grid.params]

    def grid_problems(where: dict[str, Any], base: tuple[Any, ...]) -> list[Problem]:
        return [_problem(locs, base + ("where", k), f"unknown grid key {k!r}{did_you_mean(k, grid_keys)}"
                                                    f" (grid keys: {', '.join(grid_keys)})")
                for k in where if k not in grid_keys] + where_problems(suite, where, base, locs)

    for t, table in enumerate(suite.leaderboards):
        base = ("leaderboards", t)
        for i, m in enumerate(table.methods or []):
            if m not in method_keys:
                problems.append(_problem(locs, base + ("methods", i),
                                         f"unknown method {m!r}{did_you_mean(m, method_keys)}"))
        problems += grid_problems(table.where, base)
        figures = written_figures(suite, registry) if table.figures else None
        for i, figure in enumerate(table.figures if figures is not None else []):
            if figure not in figures:
                problems.append(_problem(locs, base + ("figures", i),
                                         f"no metric writes a figure {figure!r}"
                                         f"{did_you_mean(figure, figures)} (written: "
                                         f"{', '.join(figures) or 'none'})"))
        for c, column in enumerate(table.columns):
            cbase = base + ("columns", c)
            problems += metric_value_problems(column.metric, column.value, cbase)
            for m in column.paper:
                if m not in method_keys:
                    problems.append(_problem(locs, cbase + ("paper", m),
                                             f"unknown method {m!r}{did_you_mean(m, method_keys)}"))
    for f, finding in enumerate(suite.findings):
        base = ("findings", f)
        problems += grid_problems(finding.where, base)
        problems += metric_value_problems(finding.metric, finding.value, base)
        for i, comparison in enumerate(finding.holds):
            try:
                terms = parse_comparison(comparison)
            except BadComparison as exc:
                problems.append(_problem(locs, base + ("holds", i), str(exc)))
                continue
            if terms[1] == "~" and not finding.tolerance:
                problems.append(_problem(locs, base + ("holds", i),
                                         f"{comparison!r} needs the finding's `tolerance` (how close "
                                         "counts as equal), else it cannot be tested"))
            for term in (terms[0], terms[2]):
                method = term_methods(term)
                if method is not None and method not in method_keys:
                    problems.append(_problem(locs, base + ("holds", i),
                                             f"unknown method {method!r}"
                                             f"{did_you_mean(method, method_keys)}"
                                             f" (methods: {', '.join(method_keys)})"))
    problems += _repeated(locs, "leaderboards", [(("leaderboards", i, "id"), t.id)
                                                 for i, t in enumerate(suite.leaderboards)], "id")
    enabled = [k for k, m in suite.methods.items() if m.enabled]
    for table in suite.leaderboards:  # rows of one table must be told apart
        shown = [k for k in (table.methods or enabled) if k in enabled]
        problems += _repeated(locs, "methods", [(("methods", k, "label"), suite.methods[k].label or k)
                                                for k in shown], "label")
    return problems


def _repeated(locs: Locations, section: str, named: list[tuple[tuple[Any, ...], str]],
              what: str) -> list[Problem]:
    """A second table id, or a second method label in one table: its page anchors or rows could
    not be told apart."""
    first: dict[str, tuple[Any, ...]] = {}
    problems = []
    for path, name in named:
        if name in first:
            problems.append(_problem(locs, path, f"{section} {what} {name!r} is already used by "
                                                 f"{dotted(first[name])}; each needs its own"))
        first.setdefault(name, path)
    return problems


def factor_problems(suite: Suite, registry: Registry, locs: Locations) -> list[Problem]:
    """A metric that reads ground-truth factors (``Metric.needs_factors``) asked for on a dataset that
    offers none: one problem per place it is asked for, naming every method it would fail for."""
    found: dict[tuple, tuple[str, Any, tuple, list[str]]] = {}
    for key, method in suite.methods.items():
        dataset = method.dataset or suite.dataset
        wanted = method.metrics if method.metrics is not None else list(suite.metrics)
        factors: Any = "unchecked"
        for i, metric_key in enumerate(wanted if method.enabled else []):
            ref = suite.metrics.get(metric_key)
            try:
                if ref is None or not registry.get("metric", ref.name).cls.needs_factors:
                    continue
                if factors == "unchecked":
                    factors = registry.create("dataset", dataset.as_dict()).info().factors
            except BenchbedError:  # reported by the other checks
                break
            if factors is None:
                path = ("methods", key, "metrics", i) if method.metrics is not None else ("metrics", metric_key)
                data_path = ("methods", key, "dataset") if method.dataset else ("dataset",)
                found.setdefault((path, dataset.name), (metric_key, ref, data_path, []))[3].append(key)
    return [Problem(str(locs.find(path)), dotted(path),
                    f"metric {metric_key!r} ({ref.name}) needs ground-truth factors of variation, "
                    f"but dataset {dataset_name!r} (at {locs.find(data_path)}) offers none; use a "
                    f"dataset with factors (e.g. dsprites) or drop {metric_key!r} "
                    f"(asked for by method{'s' if len(methods) > 1 else ''} {', '.join(methods)})")
            for (path, dataset_name), (metric_key, ref, data_path, methods) in found.items()]


def _misspelt_methods(data: dict, known: list[str], profile: str | None) -> list[str]:
    """Methods a profile adds that are no whole method (a required field is missing): misspelt keys."""
    required = [name for name, field in Method.model_fields.items() if field.is_required()]
    methods = data.get("methods") if profile and isinstance(data.get("methods"), dict) else {}
    return [key for key, spec in methods.items() if str(key) not in known
            and not (isinstance(spec, dict) and all(name in spec for name in required))]


PER_METHOD = ("objective", "divergence", "prior", "encoder", "decoder", "dataset", "training", "training_at",
              "latent_dims")


def unlike_methods(raw: dict, data: dict, locs: Locations, profile: str | None) -> list[Problem]:
    """Methods alike in a field before the profile (``raw``) and unlike after it (``data``), the
    profile having set the other's (or the suite's) field and left this one's: the comparison
    would silently stop being like for like, e.g. a method added through ``extends`` that keeps
    the paper-size network while the profile shrinks every baseline's."""
    old, new = raw.get("methods"), data.get("methods")
    if not (profile and isinstance(old, dict) and isinstance(new, dict)):
        return []
    body = _mapping(_mapping(raw.get("profiles")).get(profile))
    written = _mapping(body.get("methods"))
    keys = [k for k, spec in new.items() if isinstance(old.get(k), dict) and spec.get("enabled", True)]

    def value(suite: dict, key: str | None, field: str) -> Any:  # key None: the suite's own field
        spec = suite["methods"][key] if key else {}
        if field == "training":
            return merge_dicts(_mapping(suite.get("training")), _mapping(spec.get("training")))
        got = spec.get(field, suite.get(field) if field == "dataset" else None)
        return {"name": got} if isinstance(got, str) else got

    problems = []
    # latent_dims only says at which sizes a method runs; the runs at a size stay alike
    for field in (f for f in PER_METHOD if f != "latent_dims"):
        own = [k for k in keys if field in _mapping(written.get(k))]
        refs = own + ([None] if field in ("training", "dataset") and field in body else [])
        for m in (k for k in keys if k not in own):
            alike = [r for r in refs if r != m and value(raw, r, field) == value(raw, m, field)
                     and value(data, r, field) != value(data, m, field)]
            if not alike:
                continue
            gives, keeps = _flow(value(data, alike[0], field)), _flow(value(data, m, field))
            other = alike[0] or "the suite"
            more = f" (and {len(alike) - 1} more)" if len(alike) > 1 else ""
            problems.append(_problem(locs, ("methods", m, field),
                                     f"profile {profile} gives {other}{more} {field} {gives} but leaves "
                                     f"{m}'s {keeps}, which was {other}'s too before the profile: not like "
                                     f"for like; add `profiles.{profile}.methods.{m}.{field}: {gives}`, or "
                                     f"write {m}'s {field} there unchanged if that is intended"))
    return problems


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _flow(value: Any) -> str:
    """A value as one line of YAML, e.g. {name: mlp, hidden: [256, 256]}."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.removesuffix("...\n").strip()


def _non_finite(value: Any, path: tuple[Any, ...], locs: Locations) -> list[Problem]:
    """.inf and .nan written in a suite: no setting means them, and a record cannot hold them
    (a plugin's own default of inf, say 'no clipping', is not written, so it passes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem(str(locs.find(path)), dotted(path), f"{value} is not a finite number")]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, item in items for p in _non_finite(item, path + (key,), locs)]


def load_suite(path: str | Path, profile: str | None = None, registry: Registry | None = None,
               raw: tuple[dict, Locations] | None = None) -> tuple[Suite, Locations]:
    """Read (or take ``raw``, ``load_raw``'s result), resolve and check a suite:
    everything but what only planning shows (``benchbed.plan.loaded.load``
    adds that); raise ``SuiteInvalid``."""
    registry = registry or get_registry()
    path = Path(path)
    data, locs = raw if raw is not None else load_raw(path)
    raw_data = data
    known = [str(k) for k in data.get("methods")] if isinstance(data.get("methods"), dict) else []
    data, locs, chosen = apply_profile(dict(data), locs, profile)
    typos = _misspelt_methods(data, known, chosen)
    problems = [Problem(str(locs.find(("methods", key))), f"profiles.{chosen}.methods.{key}",
                        f"unknown method {key!r}{did_you_mean(str(key), known)}"
                        f" (methods: {', '.join(known)})")
                for key in typos]
    if typos:  # validated without them, so that their missing fields are not reported too
        data = {**data, "methods": {k: v for k, v in data["methods"].items() if k not in typos}}
    problems += _non_finite(data, (), locs)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems += convert_errors(exc, Suite, (), locs)
    if problems:
        raise SuiteInvalid(str(path), problems, chosen)
    for kind, slot_path, ref in component_slots(suite):
        problems += check_component(registry, kind, slot_path, ref, locs)
    problems += check_references(suite, registry, locs)
    problems += unlike_methods(raw_data, data, locs, chosen)
    if problems:
        raise SuiteInvalid(str(path), list(dict.fromkeys(problems)), chosen)  # one line per problem
    return suite, locs
