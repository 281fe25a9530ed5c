"""Run records: the small, committable summary of each run of a suite.

A record holds the run's resolved config, its metric values, status and
provenance, but no weights. Leaderboards are built from records alone, so
they can be rebuilt byte for byte from a checkout without the run store.

Layout, for a suite (and profile) published as NAME::

    leaderboards/NAME.md
    leaderboards/NAME/records/<method>__z<d>__s<seed>.json
    leaderboards/NAME/figures/<method>__z<d>__s<seed>/<figure>.png
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed.files import atomic_write, remove_stale_temps
from benchbed.plan.runs import PlannedRun
from benchbed.run.store import Store, metric_hashes, read_json


def records_dir(leaderboard_dir: Path, name: str) -> Path:
    return leaderboard_dir / name / "records"


def finite_metrics(metrics: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Metric values with NaN and infinities as null (JSON has neither), and
    the ``metric/value`` names that were not finite (e.g. a standard error
    over one sample)."""
    bad = [(key, name) for key, values in metrics.items() for name, value in values.items()
           if isinstance(value, float) and not math.isfinite(value)]
    out = {key: {name: None if (key, name) in bad else value for name, value in values.items()}
           for key, values in metrics.items()}
    return out, [f"{key}/{name} = {metrics[key][name]}" for key, name in bad]


def not_finite_values(record: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(metric, value) -> what it was ('nan', 'inf'), from finite_metrics' names in a record."""
    out = {}
    for entry in record.get("not_finite", []):
        name, _, value = entry.partition(" = ")
        metric, _, key = name.partition("/")
        out[(metric, key)] = value
    return out


def shown_not_finite(record: dict[str, Any], shown: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The shown values (``Suite.shown_values``) the run's metrics returned as nan or inf: (metric,
    value) -> 'nan'; a non-finite standard error no column reads is not one."""
    return {mv: x for mv, x in not_finite_values(record).items() if mv in shown}


def make_record(run: PlannedRun, store: Store) -> dict[str, Any]:
    run_dir = store.run_dir(run.key)
    status = read_json(run_dir / "status.json", {}) or {}
    done = read_json(run_dir / "metrics.json", {}) or {}
    # Only the planned specs' entries: a metric of an older spec stays in metrics.json but is not this run's.
    planned = [done[h] for h in sorted(set(metric_hashes(run.evaluation).values())) if h in done]
    figures = sorted({f for entry in planned for f in entry.get("figures", [])})
    eval_seconds = sum(entry.get("seconds", 0.0) for entry in planned)
    metrics, not_finite = finite_metrics(store.metric_values(run))
    record = {
        "suite": run.suite,
        "profile": run.profile,
        "method": run.method,
        "label": run.label,
        "latent_dim": run.latent_dim,
        "seed": run.seed,
        "grid": run.grid,
        "run_key": run.key,
        "slug": run.slug,
        "status": status.get("status", "pending"),
        "reason": status.get("reason"),
        "steps": status.get("steps"),
        "train_seconds": round(status.get("train_seconds", 0.0), 1),
        "convergence": status.get("convergence"),
        "eval_seconds": round(eval_seconds, 1),
        "metrics": metrics,
        "metric_errors": store.metric_errors(run),
        "figures": figures,
        "config": run.config,
        "evaluation": run.evaluation,
        "provenance": _provenance(run, run_dir, done),
    }
    if not_finite:  # only then, so records of finite runs keep their bytes
        record["not_finite"] = not_finite  # written as null in "metrics"
    return record


def _provenance(run: PlannedRun, run_dir: Path, done: dict[str, Any]) -> dict[str, Any]:
    """The training's provenance, plus ``evaluated``: {commit: metric keys} for
    the metrics evaluated later, at another commit than the training's (only
    then, so that other records keep their bytes), and ``evaluated_finished``:
    {commit: when}, so that the page can tell which commit came last."""
    prov = read_json(run_dir / "provenance.json", {}) or {}
    later: dict[str, list[str]] = {}
    when: dict[str, str] = {}  # the same commits -> when they last evaluated (older entries kept no time)
    for key, mhash in metric_hashes(run.evaluation).items():
        entry = done.get(mhash) or {}
        if "commit" not in entry or "error" in entry:  # from before commits were kept, or no value
            continue
        if entry["commit"] != prov.get("git_commit"):  # None: evaluated outside a git checkout
            commit = str(entry["commit"] or "unknown")
            later.setdefault(commit, []).append(key)
            if entry.get("finished"):
                when[commit] = max(when.get(commit, ""), str(entry["finished"]))
    return {**prov, "evaluated": later, **({"evaluated_finished": when} if when else {})} if later else prov


def first_seeds(runs: list[PlannedRun]) -> set[str]:
    """Keys of the runs whose figures are published: each row's first seed."""
    first: dict[tuple, PlannedRun] = {}
    for run in runs:
        row = (run.method, run.latent_dim, json.dumps(run.grid, sort_keys=True))
        if row not in first or run.seed < first[row].seed:
            first[row] = run
    return {run.key for run in first.values()}


def export_run(run: PlannedRun, store: Store, leaderboard_dir: Path, name: str,
               with_figures: bool) -> dict[str, Any] | None:
    """Write the run's record (and copy its figures) and return it; None if it has no outcome yet
    (or is a local failure that does not replace a published finished run)."""
    record = make_record(run, store)
    if record["status"] not in ("finished", "failed"):
        return None
    rdir = records_dir(leaderboard_dir, name)
    rdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(rdir)  # a killed writer's, so that `git add` never sees one
    target = rdir / f"{run.slug}.json"
    previous = read_json(target)
    if (record["status"] == "failed" and isinstance(previous, dict)
            and previous.get("run_key") == run.key and previous.get("status") == "finished"):
        return None  # a local failure never replaces a published finished run
    # Strict JSON: allow_nan=False, as make_record wrote non-finite values as null.
    atomic_write(target, json.dumps(record, indent=2, sort_keys=True, default=str,
                                    allow_nan=False) + "\n")
    if with_figures:
        target = leaderboard_dir / name / "figures" / run.slug
        for rel in record["figures"]:
            source = store.run_dir(run.key) / rel
            if source.exists():
                target.mkdir(parents=True, exist_ok=True)
                atomic_write(target / Path(rel).name, source.read_bytes())
    return record


def export(runs: list[PlannedRun], store: Store, leaderboard_dir: Path, name: str) -> int:
    """Records for every run with an outcome; returns how many were written."""
    published = first_seeds(runs)
    return sum(export_run(run, store, leaderboard_dir, name, run.key in published) is not None
               for run in runs)


# What the leaderboard reads from a record, with the type it must have.
REQUIRED = {"run_key": str, "method": str, "status": str, "latent_dim": int, "seed": int,
            "grid": dict, "metrics": dict}


OPTIONAL = {"label": (str,), "slug": (str,), "reason": (str,), "provenance": (dict,),
            "metric_errors": (dict,), "figures": (list,), "evaluation": (dict,),
            "train_seconds": (int, float), "eval_seconds": (int, float)}


@dataclass(frozen=True)
class BadRecord:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: skipped, not a run record: {self.reason}"


def check_record(record: Any) -> str | None:
    """Why ``record`` cannot be used (None when it can)."""
    if not isinstance(record, dict):
        return f"a record is a JSON object, not {type(record).__name__}"
    for key, kind in REQUIRED.items():
        if key not in record:
            return f"no {key!r}"
        value = record[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{key!r} must be {kind.__name__}, not {type(value).__name__} ({value!r:.40})"
    for key, kinds in OPTIONAL.items():
        if record.get(key) is not None and not isinstance(record[key], kinds):
            return f"{key!r} must be {' or '.join(k.__name__ for k in kinds)}, not {type(record[key]).__name__}"
    for key, values in record["metrics"].items():
        if not isinstance(values, dict):
            return f"metrics.{key} must be an object of values"
        for name, value in values.items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                return f"metrics.{key}.{name} must be a number or null, not {value!r:.40}"
            if value is not None and not math.isfinite(value):  # benchbed writes these as null
                return f"metrics.{key}.{name} is {value}, which a record writes as null (and names in not_finite)"
    return None


def read_records(leaderboard_dir: Path, name: str) -> tuple[list[dict[str, Any]], list[BadRecord]]:
    """The usable records, and the files that are not (each with its reason)."""
    rdir = records_dir(leaderboard_dir, name)
    if not rdir.is_dir():
        return [], []
    records, bad = [], []
    for path in sorted(rdir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            bad.append(BadRecord(path, f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            bad.append(BadRecord(path, f"unreadable ({getattr(exc, 'strerror', None) or exc})"))
            continue
        reason = check_record(record)
        if reason:
            bad.append(BadRecord(path, reason))
            continue
        record.setdefault("label", record["method"])
        record.setdefault("reason", None)
        if record.get("provenance") is None:
            record["provenance"] = {}
        records.append((path, record))
    return _one_per_run(records, bad)


def _one_per_run(found: list[tuple[Path, dict[str, Any]]],
                 bad: list[BadRecord]) -> tuple[list[dict[str, Any]], list[BadRecord]]:
    """A copied record file must not count as another seed: one record per run (its key and its
    own slug, which a copy keeps; a renamed method's new record has another), the one whose file
    is named for it (else the first by name); the others are set aside."""
    keep: dict[Any, tuple[Path, dict[str, Any]]] = {}
    for path, record in sorted(found, key=lambda pr: (pr[0].stem != pr[1].get("slug"), pr[0].name)):
        key = (record["run_key"], record.get("slug"))  # check_record has made sure of the key
        if key in keep:
            bad.append(BadRecord(path, f"a second record of run {key[0]} (kept: {keep[key][0].name}); "
                                       "a copy would count as another seed"))
        else:
            keep[key] = (path, record)
    return [record for _, record in sorted(keep.values(), key=lambda pr: pr[0].name)], bad
