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
from benchbed.suite.protocol import SLOTS, Method, Suite, Training
from benchbed.suite.source import SOURCE_KEYS, Locations, apply_profile, load_raw, merge_dicts


def dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line"
    path: str  # dotted field path
    message: str

    @classmethod
    def at(cls, locs: Locations, path: tuple[Any, ...], message: str) -> Problem:
        return cls(str(locs.find(path)), dotted(path), message)

    def __str__(self) -> str:
        return f"{self.where}: {self.path or '(suite)'}: {self.message}"


class SuiteInvalid(BenchbedError):
    def __init__(self, file: str, problems: list[Problem], profile: str | None = None):
        self.file, self.problems, self.profile = file, problems, profile
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        shown = f" (profile {profile})" if profile else ""
        super().__init__(f"{file}{shown}: {len(problems)} {noun}:\n{lines}")


def unknown(what: str, name: Any, known: list[str], listed: bool = False) -> str:
    """"unknown metric 'x'", the close names, and with ``listed`` every known one."""
    shown = f" ({what}s: {', '.join(known)})" if listed else ""
    return f"unknown {what} {name!r}{did_you_mean(name, known)}{shown}"


# ----------------------------------------------------------- pydantic errors


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model a pydantic error location ends in, followed through the annotations."""
    current: Any = root
    for part in loc:
        for cand in _unwrap(current):
            origin, args = typing.get_origin(cand), typing.get_args(cand)
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                fields = cand.model_fields
                field = fields.get(part) or {f.alias: f for f in fields.values()}.get(part)
                if field is not None:
                    current = field.annotation
                    break
            elif origin in (dict, list, tuple) and args:
                current = args[-1 if origin is dict else 0]
                break
        else:
            return None
    return next((c for c in _unwrap(current) if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def convert_errors(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...],
                   locs: Locations) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind, value, path = err["type"], err.get("input"), prefix + loc
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = [k for name, f in parent.model_fields.items()
                       for k in ((f.alias, name) if f.alias else (name,))] if parent else []
            if parent is Suite:  # keys the source reads before the model sees the suite
                allowed = [k for k in allowed if k != "profile"] + list(SOURCE_KEYS)
            msg = unknown("key", loc[-1], allowed) + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif kind == "missing":
            msg = "required but missing"
        elif kind in ("literal_error", "enum"):
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"{value!r} is not one of {expected}{did_you_mean(str(value), _quoted(expected))}"
        else:
            shown = f" (got {value!r})" if not isinstance(value, (dict, list)) else ""
            msg = err["msg"].removeprefix("Value error, ") + shown
        # A section-wide rule ("give exactly one of 'epochs' and 'steps'"): point
        # at the first named field written there.
        written = [path + (name,) for name in _quoted(msg) if path + (name,) in locs]
        where = locs[written[0]] if kind == "value_error" and written else locs.find(path)
        problems.append(Problem(str(where) if where else "?", dotted(path), msg))
    return problems


# ------------------------------------------------------------ the checks


def check_components(suite: Suite, registry: Registry, locs: Locations) -> list[Problem]:
    """Every component is registered and its parameters fit its plugin's ``Params``."""
    slots = [("dataset", ("dataset",), suite.dataset)]
    for key, method in suite.methods.items():
        slots += [(kind, ("methods", key, slot), getattr(method, slot))
                  for slot, kind in {"dataset": "dataset", **SLOTS}.items()]
    slots += [("corruption", ("corruptions", key), ref) for key, ref in suite.corruptions.items()]
    slots += [("metric", ("metrics", key), ref) for key, ref in suite.metrics.items()]
    problems = []
    for kind, path, ref in [*slots, ("executor", ("executor",), suite.executor)]:
        if ref is None:
            continue
        try:
            cls = registry.get(kind, ref.name).cls
        except UnknownComponent as exc:
            problems.append(Problem.at(locs, path + ("name",), str(exc)))
            continue
        try:
            cls.Params.model_validate(ref.params)
        except ValidationError as exc:
            problems += convert_errors(exc, cls.Params, path, locs)
    return problems


def divergence_refusal(registry: Registry, objective: str, divergence: str | None) -> str | None:
    """Why objective ``objective`` cannot train with divergence ``divergence`` (None: no divergence), with
    the objectives that would take it; None if it can."""
    refusal = registry.get("objective", objective).cls.divergence_refusal(divergence)
    if refusal is None:
        return None
    takers = [name for name in registry.names("objective") if divergence is not None
              and registry.get("objective", name).cls.divergence_refusal(divergence) is None]
    return (f"objective {objective!r} {refusal}"
            + (f" (objectives that take {divergence!r}: {', '.join(takers)})" if takers else ""))


def check_divergences(data: dict, registry: Registry, locs: Locations) -> list[Problem]:
    """Each method's divergence (written, or its objective's default) is one its objective takes.
    Read from the YAML, not the model, so that it is reported beside any other problem."""
    def name(ref: Any) -> Any:
        return ref.get("name") if isinstance(ref, dict) else ref

    problems = []
    for key, spec in _mapping(data.get("methods")).items():
        spec = _mapping(spec)
        objective, divergence = name(spec.get("objective")), name(spec.get("divergence"))
        if spec.get("enabled") is False:
            continue  # planned never, as before this check moved here
        if objective not in registry.names("objective") or (
                divergence is not None and divergence not in registry.names("divergence")):
            continue  # an unknown or malformed name: check_components or the model says so
        default = registry.get("objective", objective).cls.default_divergence
        if divergence is None:  # none written (or null): the objective's default, as planning fills it in
            divergence = default["name"] if default else None
        refusal = divergence_refusal(registry, objective, divergence)
        if refusal is not None:
            problems.append(Problem.at(locs, ("methods", key, "divergence" if divergence else "objective"),
                                       refusal))
    return problems


def _kind(value: Any) -> str:
    """A value's kind as YAML shows it (int and float are both numbers)."""
    kinds = ((bool, "true/false"), ((int, float), "a number"), (type(None), "null"), (str, "text"),
             (list, "a list"))
    return next((name for types_, name in kinds if isinstance(value, types_)), "a mapping")


def where_problems(suite: Suite, where: dict[str, Any], base: tuple[Any, ...],
                   locs: Locations) -> list[Problem]:
    """A ``where`` value of the wrong kind would silently match nothing."""
    problems = []
    for key, wanted in where.items():
        values, path = wanted if isinstance(wanted, list) else [wanted], base + ("where", key)
        if not values:
            problems.append(Problem.at(locs, path, "an empty list matches no run"))
        grid = suite.grid.params.get(key, [])
        kinds = sorted({_kind(v) for v in grid})
        for i, v in enumerate(values):
            at = path + (i,) if isinstance(wanted, list) else path
            if key in ("latent_dim", "seed"):
                if isinstance(v, bool) or not isinstance(v, int):
                    problems.append(Problem.at(locs, at, f"{key} must be a whole number (or a list of "
                                                         f"them), got {v!r}"))
                elif key == "latent_dim" and v < 1:
                    problems.append(Problem.at(locs, at, f"latent_dim must be positive, got {v}: "
                                                         "it would match no run"))
            elif key in suite.grid.params and _kind(v) not in kinds:
                shown = ", ".join(repr(g) for g in grid)
                problems.append(Problem.at(locs, at, f"{v!r} is {_kind(v)}, but the grid's {key} values "
                                                     f"are {' or '.join(kinds)} ({shown}): it would match "
                                                     "no run"))
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


def _dotted_keys(mapping: dict[str, Any], prefix: str) -> list[str]:
    """The dotted paths of a nested mapping's leaves, e.g. training.optimiser.lr."""
    out = []
    for key, value in mapping.items():
        path = f"{prefix}.{key}"
        out += _dotted_keys(value, path) if isinstance(value, dict) and value else [path]
    return out


def check_references(suite: Suite, registry: Registry, locs: Locations) -> list[Problem]:
    problems: list[Problem] = []
    produced = _declared(suite, registry, "produces")
    conditions = ["clean", *suite.corruptions]
    metric_keys, method_keys = list(suite.metrics), list(suite.methods)

    def problem(path: tuple[Any, ...], message: str) -> None:
        problems.append(Problem.at(locs, path, message))

    def validated(data: dict[str, Any], path: tuple[Any, ...]) -> Training | None:
        try:
            return Training.model_validate(data)
        except ValidationError as exc:
            problems.extend(convert_errors(exc, Training, path, locs))
            return None

    for key, ref in suite.metrics.items():
        for i, cond in enumerate(ref.params.get("conditions") or []):
            if cond not in conditions:
                problem(("metrics", key, "conditions", i),
                        unknown("condition", cond, conditions, listed=True))

    base_training = suite.training.model_dump()
    trainings = []  # (a method's training, the sections that may write its settings, method key)
    for key, method in suite.methods.items():
        for i, name in enumerate(method.metrics or []):
            if name not in metric_keys:
                problem(("methods", key, "metrics", i), unknown("metric", name, metric_keys))
        for slot in ("encoder", "decoder"):
            ref = getattr(method, slot)
            try:
                provides = registry.get("architecture", ref.name).cls.provides
            except UnknownComponent:
                continue
            if slot not in provides:
                problem(("methods", key, slot, "name"), f"architecture {ref.name!r} builds no {slot} "
                                                        f"(it provides: {', '.join(sorted(provides))})")
        own = (("methods", key, "training"), method.training)
        merged = merge_dicts(base_training, method.training)
        training = validated(merged, own[0]) if method.training else suite.training
        if training is not None:
            trainings.append((training, [own], key))
        # Whether a size has runs is checked with the plan (another profile may run it).
        for size, override in method.training_at.items():
            path = ("methods", key, "training_at", size)
            for field in _dotted_keys(override, "training"):
                clash = [p for p in suite.grid.params if p == field or p.startswith(field + ".")
                         or field.startswith(p + ".")]
                if clash:
                    problem(path, f"sets {field}, which grid.params also sets ({clash[0]}): the grid's "
                                  "values would win")
            if training is None:
                continue  # reported once, where it is written
            at_size = validated(merge_dicts(merged, override), path)
            if at_size is not None:
                trainings.append((at_size, [(path, override), own], key))

    for training, written, key in trainings:
        def at(field: str) -> tuple[Any, ...]:
            # A setting is reported where it is written: at a latent size, the method's section, the suite's.
            return next((p for p, section in written if field in section), ("training",)) + (field,)

        if training.corruption is not None and training.corruption not in suite.corruptions:
            problem(at("corruption"), unknown("condition", training.corruption, list(suite.corruptions)))
        evaluated = suite.methods[key].metrics
        for i, name in enumerate(training.track):
            if name not in metric_keys:
                problem(at("track") + (i,), unknown("metric", name, metric_keys))
            elif evaluated is not None and name not in evaluated:
                problem(at("track") + (i,), f"tracks metric {name!r}, which method {key!r} does not "
                                            f"evaluate (its metrics: {', '.join(evaluated)})")
            else:
                try:
                    trackable = registry.get("metric", suite.metrics[name].name).cls.trackable
                except UnknownComponent:
                    continue
                if not trackable:
                    problem(at("track") + (i,), f"metric {name!r} ({suite.metrics[name].name}) cannot "
                                                "be tracked during training")

    grid_keys = ["latent_dim", "seed", *suite.grid.params]

    def check_selection(where: dict[str, Any], base: tuple[Any, ...]) -> None:
        for k in where:
            if k not in grid_keys:
                problem(base + ("where", k), unknown("grid key", k, grid_keys, listed=True))
        problems.extend(where_problems(suite, where, base, locs))

    def check_value(metric: str, value: str, base: tuple[Any, ...]) -> None:
        """A table column's or a finding's metric key and the value it reads."""
        names = produced.get(metric)
        if metric not in metric_keys:
            problem(base + ("metric",), unknown("metric", metric, metric_keys))
        elif names is not None and value not in names:
            problem(base + ("value",), f"metric {metric!r} ({suite.metrics[metric].name}) gives no value "
                                       f"{value!r}{did_you_mean(value, names)} (it gives: "
                                       f"{', '.join(names) or 'no values, only figures'})")

    figures = None
    if any(table.figures for table in suite.leaderboards):
        declared = _declared(suite, registry, "figures_written", list(suite.corruptions)).values()
        figures = None if None in declared else list(dict.fromkeys(n for names in declared for n in names))
    for t, table in enumerate(suite.leaderboards):
        base = ("leaderboards", t)
        for i, m in enumerate(table.methods or []):
            if m not in method_keys:
                problem(base + ("methods", i), unknown("method", m, method_keys))
        check_selection(table.where, base)
        for i, figure in enumerate(table.figures if figures is not None else []):
            if figure not in figures:
                problem(base + ("figures", i), f"no metric writes a figure {figure!r}"
                                               f"{did_you_mean(figure, figures)} (written: "
                                               f"{', '.join(figures) or 'none'})")
        for c, column in enumerate(table.columns):
            check_value(column.metric, column.value, base + ("columns", c))
            for m in column.paper:
                if m not in method_keys:
                    problem(base + ("columns", c, "paper", m), unknown("method", m, method_keys))
    for f, finding in enumerate(suite.findings):
        base = ("findings", f)
        check_selection(finding.where, base)
        check_value(finding.metric, finding.value, base)
        for i, comparison in enumerate(finding.holds):
            try:
                left, op, right = parse_comparison(comparison)
            except BadComparison as exc:
                problem(base + ("holds", i), str(exc))
                continue
            if op == "~" and not finding.tolerance:
                problem(base + ("holds", i), f"{comparison!r} needs the finding's `tolerance` (how close "
                                             "counts as equal), else it cannot be tested")
            for method in (term_methods(left), term_methods(right)):
                if method is not None and method not in method_keys:
                    problem(base + ("holds", i), unknown("method", method, method_keys, listed=True))

    def repeated(section: str, what: str, named: list[tuple[tuple[Any, ...], str]]) -> None:
        """A second table id, or a second method label in one table: page anchors or rows that
        could not be told apart."""
        first: dict[str, tuple[Any, ...]] = {}
        for path, name in named:
            if name in first:
                problem(path, f"{section} {what} {name!r} is already used by {dotted(first[name])}; "
                              "each needs its own")
            first.setdefault(name, path)

    repeated("leaderboards", "id", [(("leaderboards", i, "id"), table.id)
                                    for i, table in enumerate(suite.leaderboards)])
    enabled = [k for k, m in suite.methods.items() if m.enabled]
    for table in suite.leaderboards:
        repeated("methods", "label", [(("methods", k, "label"), suite.methods[k].label or k)
                                      for k in table.methods or enabled if k in enabled])
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
                path = ("metrics", metric_key) if method.metrics is None else ("methods", key, "metrics", i)
                data_path = ("methods", key, "dataset") if method.dataset else ("dataset",)
                found.setdefault((path, dataset.name), (metric_key, ref, data_path, []))[3].append(key)
    return [Problem.at(locs, path, f"metric {metric_key!r} ({ref.name}) needs ground-truth factors of "
                                   f"variation, but dataset {dataset_name!r} (at {locs.find(data_path)}) "
                                   f"offers none; use a dataset with factors (e.g. dsprites) or drop "
                                   f"{metric_key!r} (asked for by method{'s' if len(methods) > 1 else ''} "
                                   f"{', '.join(methods)})")
            for (path, dataset_name), (metric_key, ref, data_path, methods) in found.items()]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _flow(value: Any) -> str:
    """A value as one line of YAML, e.g. {name: mlp, hidden: [256, 256]}."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.removesuffix("...\n").strip()


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
    # latent_dims is left out: it only says at which sizes a method runs, and the runs at a size stay alike
    for field in (*SLOTS, "dataset", "training", "training_at"):
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
            problems.append(Problem.at(locs, ("methods", m, field),
                                       f"profile {profile} gives {other}{more} {field} {gives} but leaves "
                                       f"{m}'s {keeps}, which was {other}'s too before the profile: not like "
                                       f"for like; add `profiles.{profile}.methods.{m}.{field}: {gives}`, or "
                                       f"write {m}'s {field} there unchanged if that is intended"))
    return problems


def _non_finite(value: Any, path: tuple[Any, ...], locs: Locations) -> list[Problem]:
    """.inf and .nan written in a suite: no setting means them, and a record cannot hold them
    (a plugin's own default of inf, say 'no clipping', is not written, so it passes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [Problem.at(locs, path, f"{value} is not a finite number")]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, item in items for p in _non_finite(item, path + (key,), locs)]


def load_suite(path: str | Path, profile: str | None = None, registry: Registry | None = None,
               raw: tuple[dict, Locations] | None = None) -> tuple[Suite, Locations]:
    """Read (or take ``raw``, ``load_raw``'s result), resolve and check a suite:
    everything but what only planning shows (``benchbed.plan.loaded.load``
    adds that); raise ``SuiteInvalid``."""
    registry = registry or get_registry()
    path = Path(path)
    raw_data, locs = raw if raw is not None else load_raw(path)
    known = [str(k) for k in raw_data["methods"]] if isinstance(raw_data.get("methods"), dict) else []
    data, locs, chosen = apply_profile(dict(raw_data), locs, profile)
    # Methods a profile adds that are no whole method (a required field is missing): misspelt keys,
    # validated without them so that their missing fields are not reported too.
    required = [name for name, field in Method.model_fields.items() if field.is_required()]
    typos = [key for key, spec in _mapping(data.get("methods") if chosen else None).items()
             if str(key) not in known and not (isinstance(spec, dict) and all(n in spec for n in required))]
    problems = [Problem(str(locs.find(("methods", key))), f"profiles.{chosen}.methods.{key}",
                        unknown("method", key, known, listed=True)) for key in typos]
    if typos:
        data = {**data, "methods": {k: v for k, v in data["methods"].items() if k not in typos}}
    problems += _non_finite(data, (), locs)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems += convert_errors(exc, Suite, (), locs)
    problems += check_divergences(data, registry, locs)
    if problems:
        raise SuiteInvalid(str(path), problems, chosen)
    problems += check_components(suite, registry, locs)
    problems += check_references(suite, registry, locs)
    problems += unlike_methods(raw_data, data, locs, chosen)
    if problems:
        raise SuiteInvalid(str(path), list(dict.fromkeys(problems)), chosen)  # one line per problem
    return suite, locs
