"""The run store: one folder per run, and an SQLite index of them all.

Layout under the store root (``./runs`` by default)::

    index.sqlite            runs, their metrics, and which suite uses which
    <key>/config.json       the resolved config
    <key>/status.json       trained | finished | failed (+ reason), written by the worker
    <key>/metrics.json      metric results by metric hash
    <key>/model.pt          final weights (state dicts; loaded weights_only)
    <key>/checkpoint.pt     the last checkpoint while training, for resuming
    <key>/log.txt, curves.csv, provenance.json, figures/*.png
    cache/                  shared: classifiers, FID statistics

Only the driver writes the index (workers write their run folder), so a
cluster never has concurrent SQLite writers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from benchbed.plan import PlannedRun, canonical_json, hash_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT,
    config TEXT NOT NULL,
    wall_time REAL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_key TEXT NOT NULL,
    metric_hash TEXT NOT NULL,
    spec TEXT NOT NULL,
    run_values TEXT NOT NULL,
    PRIMARY KEY (run_key, metric_hash)
);
CREATE TABLE IF NOT EXISTS suite_runs (
    suite TEXT NOT NULL,
    profile TEXT NOT NULL,
    slug TEXT NOT NULL,
    run_key TEXT NOT NULL,
    PRIMARY KEY (suite, profile, slug)
);
"""


def metric_hash(spec: dict[str, Any], corruptions: dict[str, Any], used: list[str]) -> str:
    """Identity of a metric result: its spec and the corruptions it evaluates under."""
    return hash_of({"spec": spec, "conditions": {c: corruptions[c] for c in used}}, 12)


def metric_hashes(evaluation: dict[str, Any]) -> dict[str, str]:
    """Metric key -> identity of its result, for a run's evaluation plan (``plan.resolve_evaluation``)."""
    corruptions = evaluation.get("corruptions", {})
    used = evaluation.get("conditions", {})
    return {k: metric_hash(spec, corruptions, used.get(k, [])) for k, spec in evaluation.get("metrics", {}).items()}


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value: Any) -> None:
    """Atomic: a killed writer never leaves half a file, and concurrent
    writers (two drivers, a driver and a worker) each use their own temp file,
    next to ``path`` so that os.replace is atomic."""
    import os
    import uuid

    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x") as handle:  # "x": a fresh file, with the usual permissions
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite", timeout=30)
        self._db.executescript(SCHEMA)
        self._db.commit()

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def run_dir(self, key: str) -> Path:
        return self.root / key

    def close(self) -> None:
        self._db.close()

    # -- what is done

    def status(self, key: str) -> tuple[str | None, str | None]:
        """(status, reason) from the run folder (authoritative) or the index."""
        folder = read_json(self.run_dir(key) / "status.json")
        if folder:
            return folder.get("status"), folder.get("reason")
        row = self._db.execute("SELECT status, reason FROM runs WHERE key=?", (key,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def missing_metrics(self, run: PlannedRun, retry_failed: bool = False) -> list[str]:
        """Metric keys not evaluated yet (and failed ones, with ``retry_failed``)."""
        done = read_json(self.run_dir(run.key) / "metrics.json", {}) or {}
        missing = []
        for k, mhash in metric_hashes(run.evaluation).items():
            entry = done.get(mhash)
            if entry is None or (retry_failed and "error" in entry):
                missing.append(k)
        return missing

    def metric_errors(self, run: PlannedRun) -> dict[str, str]:
        done = read_json(self.run_dir(run.key) / "metrics.json", {}) or {}
        out = {}
        for k, mhash in metric_hashes(run.evaluation).items():
            entry = done.get(mhash)
            if entry is not None and "error" in entry:
                out[k] = entry["error"]
        return out

    def needs_work(self, run: PlannedRun, retry_failed: bool = False) -> bool:
        status, _ = self.status(run.key)
        if status == "failed":
            return retry_failed
        if status != "finished":
            return True
        return bool(self.missing_metrics(run, retry_failed))

    def metric_values(self, run: PlannedRun) -> dict[str, dict[str, float]]:
        """This suite's metric keys -> values, for a run."""
        done = read_json(self.run_dir(run.key) / "metrics.json", {}) or {}
        out = {}
        for k, mhash in metric_hashes(run.evaluation).items():
            entry = done.get(mhash)
            if entry is not None and "error" not in entry:
                out[k] = entry["values"]
        return out

    # -- writing (driver only)

    def prepare(self, run: PlannedRun) -> Path:
        folder = self.run_dir(run.key)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", run.config)
        self._db.execute(
            "INSERT INTO runs(key, status, config, updated) VALUES (?, 'pending', ?, ?) "
            "ON CONFLICT(key) DO NOTHING", (run.key, canonical_json(run.config), time.time()))
        self._db.execute(
            "INSERT OR REPLACE INTO suite_runs(suite, profile, slug, run_key) VALUES (?,?,?,?)",
            (run.suite, run.profile or "", run.slug, run.key))
        self._db.commit()
        return folder

    def record(self, run: PlannedRun, status: str, reason: str | None, wall_time: float) -> None:
        self._db.execute(
            "UPDATE runs SET status=?, reason=?, wall_time=?, updated=? WHERE key=?",
            (status, reason, wall_time, time.time(), run.key))
        done = read_json(self.run_dir(run.key) / "metrics.json", {}) or {}
        for mhash, entry in done.items():
            self._db.execute(
                "INSERT OR REPLACE INTO metrics(run_key, metric_hash, spec, run_values) "
                "VALUES (?,?,?,?)",
                (run.key, mhash, canonical_json(entry["spec"]), canonical_json(entry["values"])))
        self._db.commit()

    def rows(self) -> list[tuple[str, str, str | None, float | None]]:
        return self._db.execute("SELECT key, status, reason, wall_time FROM runs ORDER BY key").fetchall()
