"""The run store: one folder per run (``<key>/``: config, status, metrics by metric hash, weights,
checkpoint, log, curves, provenance, figures), ``cache/`` shared by all runs, and ``index.sqlite``.

Only the driver writes the index (workers write their run folder), so a cluster never has concurrent
SQLite writers. The index is a cache: the run folders decide what is done, and it is rebuilt from
them when damaged or stale.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable

from benchbed.errors import NoSpace
from benchbed.files import atomic_write, is_no_space, set_aside
from benchbed.plan.runs import PlannedRun, canonical_json, hash_of

LOCK = ".lock"  # a run folder's lock file: whoever holds it is running the run

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


def metric_hashes(evaluation: dict[str, Any]) -> dict[str, str]:
    """Metric key -> identity of its result (its spec and the corruptions it evaluates under), for
    a run's evaluation plan (``plan.resolve_evaluation``)."""
    corruptions, used = evaluation.get("corruptions", {}), evaluation.get("conditions", {})
    code = evaluation.get("code", {})  # plugin versions, only where a plugin provides them
    return {k: hash_of({"spec": spec, "conditions": {c: corruptions[c] for c in used.get(k, [])},
                        **({"code": code[k]} if k in code else {})}, 12)
            for k, spec in evaluation.get("metrics", {}).items()}


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def read_object(path: Path) -> dict[str, Any]:
    """A JSON object from a run folder; {} when missing, damaged or not an object."""
    value = read_json(path, {})
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


class Store:
    """The run folders and their index, brought in line with them at each opening: a damaged index
    is set aside and rebuilt, a locked one waited for (``lock_wait`` seconds), then done without."""

    lock_wait = 60.0  # seconds to wait for an index another process holds

    def __init__(self, root: str | Path, say: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.cache_dir, self.index_path = self.root / "cache", self.root / "index.sqlite"
        self._say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = None
        self._open_index()

    def run_dir(self, key: str) -> Path:
        return self.root / key

    def close(self) -> None:
        if self._db:
            self._db.close()
        self._db = None

    # -- the index (a cache of the run folders)

    def _connect(self, timeout: float) -> sqlite3.Connection:
        db = sqlite3.connect(self.index_path, timeout=timeout)
        try:
            db.executescript(SCHEMA)
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {row[0] if row else 'no answer'}")
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _open_index(self) -> None:
        try:
            try:
                self._db = self._connect(timeout=2.0)
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise
                self._say(f"waiting up to {self.lock_wait:.0f}s for the run index {self.index_path}, "
                          "which another process has locked...")
                self._db = self._connect(timeout=self.lock_wait)
            # Later writes wait as long for a lock another driver holds.
            self._db.execute(f"PRAGMA busy_timeout = {int(self.lock_wait * 1000)}")
        except sqlite3.Error as exc:
            self._index_failed(exc)
            if self._db is None:  # neither locked (False) nor a full disk (raised)
                try:  # damaged: set aside above, now a fresh one
                    self._db = self._connect(timeout=self.lock_wait)
                except sqlite3.Error as again:
                    self._index_failed(again)
        self._guarded(self._sync_with_folders)

    def _index_failed(self, exc: BaseException) -> None:
        """One line for an index problem; the runs go on without it where they can."""
        self.close()
        if is_no_space(exc):
            raise NoSpace(self.root) from None
        if _locked(exc):
            self._say(f"warning: the run index {self.index_path} stays locked by another process; "
                      "going on without it (the run folders say what is done)")
            self._db = False  # type: ignore[assignment]  # do not try again this session
            return
        if not self.index_path.exists():  # sqlite calls a deleted file "readonly": say what happened
            self._say(f"warning: the run index {self.index_path} was deleted while in use ({exc}); "
                      "going on without it (the run folders say what is done)")
            return
        aside = set_aside(self.index_path, str(exc))
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        self._say(f"warning: the run index {self.index_path} was damaged ({exc})"
                  + (f"; set aside as {aside.name}" if aside else "")
                  + "; it is rebuilt from the run folders")

    def _guarded(self, work: Callable[[sqlite3.Connection], None]) -> None:
        if not self._db:
            return
        try:
            work(self._db)
            self._db.commit()
        except sqlite3.Error as exc:
            self._index_failed(exc)
            self._db = False  # type: ignore[assignment]  # rebuilt next time

    def _sync_with_folders(self, db: sqlite3.Connection) -> None:
        """Make the index say what the run folders say."""
        indexed = {key: (status, reason) for key, status, reason in
                   db.execute("SELECT key, status, reason FROM runs")}
        folders = set()
        for folder in self.root.iterdir():
            config = folder / "config.json"
            if folder.name == "cache" or not config.is_file():
                continue
            folders.add(folder.name)
            state = read_object(folder / "status.json")
            status, reason = state.get("status") or "pending", state.get("reason")
            if indexed.get(folder.name) == (status, reason):
                continue
            run_config = read_json(config)
            if run_config is None:
                continue
            db.execute("INSERT INTO runs(key, status, reason, config, updated) VALUES (?,?,?,?,?) "
                       "ON CONFLICT(key) DO UPDATE SET status=excluded.status, reason=excluded.reason, "
                       "updated=excluded.updated",
                       (folder.name, status, reason, canonical_json(run_config), time.time()))
            self._index_metrics(db, folder.name)
        for key in set(indexed) - folders:
            db.execute("DELETE FROM runs WHERE key=?", (key,))
            db.execute("DELETE FROM metrics WHERE run_key=?", (key,))

    def _index_metrics(self, db: sqlite3.Connection, key: str) -> None:
        done = read_object(self.run_dir(key) / "metrics.json")
        for mhash, entry in done.items():
            if isinstance(entry, dict) and "spec" in entry and "values" in entry:
                db.execute(
                    "INSERT OR REPLACE INTO metrics(run_key, metric_hash, spec, run_values) "
                    "VALUES (?,?,?,?)",
                    (key, mhash, canonical_json(entry["spec"]), canonical_json(entry["values"])))

    # -- what is done

    def status(self, key: str) -> tuple[str | None, str | None]:
        """(status, reason) from the run folder, which alone decides."""
        folder = read_object(self.run_dir(key) / "status.json")
        return folder.get("status"), folder.get("reason")

    def _entries(self, run: PlannedRun) -> dict[str, dict[str, Any] | None]:
        """This suite's metric keys -> the run's result for each (None: not evaluated)."""
        done = read_object(self.run_dir(run.key) / "metrics.json")
        entries = {k: done.get(mhash) for k, mhash in metric_hashes(run.evaluation).items()}
        return {k: e if isinstance(e, dict) and isinstance(e.get("values", {}), dict) else None
                for k, e in entries.items()}

    def metric_errors(self, run: PlannedRun) -> dict[str, str]:
        return {k: e["error"] for k, e in self._entries(run).items() if e is not None and "error" in e}

    def metric_values(self, run: PlannedRun) -> dict[str, dict[str, float]]:
        return {k: e["values"] for k, e in self._entries(run).items() if e is not None and "error" not in e}

    def needs_work(self, run: PlannedRun, retry_failed: bool = False) -> bool:
        """Not finished, or a metric not evaluated yet (or failed, with ``retry_failed``)."""
        status, _ = self.status(run.key)
        if status != "finished":
            return status != "failed" or retry_failed
        return any(e is None or (retry_failed and "error" in e) for e in self._entries(run).values())

    # -- writing (driver only)

    def prepare(self, run: PlannedRun) -> Path:
        folder = self.run_dir(run.key)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", run.config)

        def index(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO runs(key, status, config, updated) VALUES (?, 'pending', ?, ?) "
                "ON CONFLICT(key) DO NOTHING", (run.key, canonical_json(run.config), time.time()))
            db.execute(
                "INSERT OR REPLACE INTO suite_runs(suite, profile, slug, run_key) VALUES (?,?,?,?)",
                (run.suite, run.profile or "", run.slug, run.key))

        self._guarded(index)
        return folder

    def record(self, run: PlannedRun, status: str, reason: str | None, wall_time: float) -> None:
        def index(db: sqlite3.Connection) -> None:
            db.execute("UPDATE runs SET status=?, reason=?, wall_time=?, updated=? WHERE key=?",
                       (status, reason, wall_time, time.time(), run.key))
            self._index_metrics(db, run.key)

        self._guarded(index)

    def rows(self) -> list[tuple[str, str, str | None, float | None]]:
        """(key, status, reason, wall time) of every indexed run."""
        if not self._db:
            return []
        return self._db.execute("SELECT key, status, reason, wall_time FROM runs ORDER BY key").fetchall()


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
