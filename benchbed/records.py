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
import shutil
from pathlib import Path
from typing import Any

from benchbed.plan import PlannedRun
from benchbed.store import Store, read_json, write_json


def publish_name(suite_name: str, profile: str | None, default_profile: str | None) -> str:
    """The default profile publishes as the suite's name; others get a suffix."""
    if profile is None or profile == default_profile:
        return suite_name
    return f"{suite_name}-{profile}"


def records_dir(leaderboard_dir: Path, name: str) -> Path:
    return leaderboard_dir / name / "records"


def figures_dir(leaderboard_dir: Path, name: str) -> Path:
    return leaderboard_dir / name / "figures"


def make_record(run: PlannedRun, store: Store) -> dict[str, Any]:
    run_dir = store.run_dir(run.key)
    status = read_json(run_dir / "status.json", {}) or {}
    done = read_json(run_dir / "metrics.json", {}) or {}
    figures = sorted({f for entry in done.values() for f in entry.get("figures", [])})
    eval_seconds = sum(entry.get("seconds", 0.0) for entry in done.values())
    return {
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
        "metrics": store.metric_values(run),
        "metric_errors": store.metric_errors(run),
        "figures": figures,
        "config": run.config,
        "evaluation": run.evaluation,
        "provenance": read_json(run_dir / "provenance.json", {}) or {},
    }


def first_seeds(runs: list[PlannedRun]) -> set[str]:
    """Keys of the runs whose figures are published: each row's first seed."""
    first: dict[tuple, PlannedRun] = {}
    for run in runs:
        row = (run.method, run.latent_dim, json.dumps(run.grid, sort_keys=True))
        if row not in first or run.seed < first[row].seed:
            first[row] = run
    return {run.key for run in first.values()}


def export_run(run: PlannedRun, store: Store, leaderboard_dir: Path, name: str,
               with_figures: bool) -> bool:
    """Write the run's record (and copy its figures); False if it has no outcome yet."""
    record = make_record(run, store)
    if record["status"] not in ("finished", "failed"):
        return False
    rdir = records_dir(leaderboard_dir, name)
    rdir.mkdir(parents=True, exist_ok=True)
    target = rdir / f"{run.slug}.json"
    previous = read_json(target)
    if (record["status"] == "failed" and previous and previous.get("run_key") == run.key
            and previous.get("status") == "finished"):
        return False  # a local failure never replaces a published finished run
    write_json(target, record)
    if with_figures:
        target = figures_dir(leaderboard_dir, name) / run.slug
        for rel in record["figures"]:
            source = store.run_dir(run.key) / rel
            if source.exists():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target / Path(rel).name)
    return True


def export(runs: list[PlannedRun], store: Store, leaderboard_dir: Path, name: str) -> int:
    """Records for every run with an outcome; returns how many were written."""
    published = first_seeds(runs)
    return sum(export_run(run, store, leaderboard_dir, name, run.key in published) for run in runs)


def load_records(leaderboard_dir: Path, name: str) -> list[dict[str, Any]]:
    rdir = records_dir(leaderboard_dir, name)
    if not rdir.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(rdir.glob("*.json"))]
