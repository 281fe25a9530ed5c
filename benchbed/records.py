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
        "status": status.get("status", "pending"),
        "reason": status.get("reason"),
        "steps": status.get("steps"),
        "train_seconds": round(status.get("train_seconds", 0.0), 1),
        "eval_seconds": round(eval_seconds, 1),
        "metrics": store.metric_values(run),
        "figures": figures,
        "config": run.config,
        "evaluation": run.evaluation,
        "provenance": read_json(run_dir / "provenance.json", {}) or {},
    }


def export(runs: list[PlannedRun], store: Store, leaderboard_dir: Path, name: str) -> int:
    """Write a record per run that has an outcome, and copy the figures of
    each row's first seed. Returns the number of records written."""
    rdir = records_dir(leaderboard_dir, name)
    rdir.mkdir(parents=True, exist_ok=True)
    first_seed: dict[tuple, int] = {}
    for run in runs:
        row = (run.method, run.latent_dim, json.dumps(run.grid, sort_keys=True))
        first_seed[row] = min(first_seed.get(row, run.seed), run.seed)
    written = 0
    for run in runs:
        record = make_record(run, store)
        if record["status"] not in ("finished", "failed"):
            continue
        write_json(rdir / f"{run.slug}.json", record)
        written += 1
        row = (run.method, run.latent_dim, json.dumps(run.grid, sort_keys=True))
        if run.seed == first_seed[row]:
            target = figures_dir(leaderboard_dir, name) / run.slug
            for rel in record["figures"]:
                source = store.run_dir(run.key) / rel
                if source.exists():
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target / Path(rel).name)
    return written


def load_records(leaderboard_dir: Path, name: str) -> list[dict[str, Any]]:
    rdir = records_dir(leaderboard_dir, name)
    if not rdir.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(rdir.glob("*.json"))]
