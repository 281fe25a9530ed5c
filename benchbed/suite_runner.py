"""suite -> plan -> execute -> record -> leaderboard, for ``benchbed run``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbed.deviations import deviations_for
from benchbed.errors import BenchbedError, did_you_mean
from benchbed.executor_spec import resolve_executor
from benchbed.leaderboard import record_slug, render
from benchbed.plan import PlannedRun, plan
from benchbed.plugins import get_registry
from benchbed.progress import PlainProgress
from benchbed.records import export, export_run, first_seeds, load_records, publish_name
from benchbed.store import Store
from benchbed.suite import Suite
from benchbed.suite_source import profile_names
from benchbed.tasks import RunTask, unpack_dir
from benchbed.validate import load_suite


@dataclass
class SuiteReport:
    total: int
    skipped: int
    finished: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run name, reason)
    leaderboard: Path | None = None
    seconds: float = 0.0


def _command(path: Path, profile: str | None, default: str | None, leaderboard_dir: Path) -> str:
    """The suite path as seen from the folder holding leaderboards/ (the
    repository root), so the page does not depend on how the path was typed."""
    base = leaderboard_dir.resolve().parent
    try:
        shown = path.resolve().relative_to(base).as_posix()
    except ValueError:
        shown = path.resolve().as_posix()
    flag = f" --profile {profile}" if profile and profile != default else ""
    return f"{shown}{flag}"


def write_leaderboard(path: Path, profile: str | None, leaderboard_dir: Path,
                      suite: Suite | None = None) -> Path:
    """Render NAME.md from the suite and its committed records."""
    if suite is None:
        suite, _ = load_suite(path, profile)
    _, default = profile_names(path)
    name = publish_name(suite.name, suite.profile, default)
    planned = {r.slug: r.key for r in plan(suite, get_registry())}
    records, stale = [], []
    for record in load_records(leaderboard_dir, name):
        slug = record_slug(record)
        if planned.get(slug) == record["run_key"]:
            records.append(record)
        elif slug in planned:
            stale.append(slug)
    target = leaderboard_dir / f"{name}.md"
    args = _command(path, suite.profile, default, leaderboard_dir)
    text = render(suite, records, figure_root=f"{name}/figures",
                  deviations=deviations_for(path, suite), run_command=f"benchbed run {args}",
                  leaderboard_command=f"benchbed leaderboard {args}", stale=sorted(stale))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def _published_complete(run: PlannedRun, record: dict[str, Any] | None) -> bool:
    """A committed record counts as done (runs resume across machines through
    git): same key, finished, and evaluated with this suite's metric specs."""
    if record is None or record.get("status") != "finished":
        return False
    return (record.get("evaluation") == run.evaluation
            and set(run.evaluation.get("metrics", {})) <= set(record.get("metrics", {})))


def run_suite(path: Path, profile: str | None, store_root: Path, executor: dict[str, Any],
              progress: PlainProgress, leaderboard_dir: Path, retry_failed: bool = False,
              only: list[str] | None = None, rerun_published: bool = False) -> SuiteReport:
    started = time.monotonic()
    registry = get_registry()
    suite, _ = load_suite(path, profile, registry)
    # ``executor``: the caller's choices (``name`` optional) over the suite's own.
    executor_spec = resolve_executor(suite.executor, executor, registry)
    runs = plan(suite, registry)
    if only:
        unknown = [m for m in only if m not in suite.methods]
        if unknown:
            raise BenchbedError(f"--only: unknown method {unknown[0]!r}"
                                f"{did_you_mean(unknown[0], list(suite.methods))}"
                                f" (methods: {', '.join(suite.methods)})")
        runs = [r for r in runs if r.method in only]
    store = Store(store_root)
    _, default = profile_names(path)
    name = publish_name(suite.name, suite.profile, default)
    # Committed records count as done, unless the user wants to repeat them.
    published = {} if rerun_published else {r["run_key"]: r for r in load_records(leaderboard_dir, name)}
    try:
        todo = [r for r in runs if store.needs_work(r, retry_failed)
                and not _published_complete(r, published.get(r.key))]
        todo_keys = {r.key for r in todo}
        earlier_failures = [r for r in runs if r.key not in todo_keys and store.status(r.key)[0] == "failed"]
        report = SuiteReport(total=len(runs), skipped=len(runs) - len(todo) - len(earlier_failures))
        runner = registry.create("executor", executor_spec)
        threads = runner.threads_per_task()
        by_key: dict[str, PlannedRun] = {}
        tasks = []
        for run in todo:
            folder = store.prepare(run)
            by_key[run.key] = run
            tasks.append(RunTask(key=run.key, config={**run.config, "evaluation": run.evaluation},
                                 run_dir=str(folder.resolve()), cache_dir=str(store.cache_dir.resolve()),
                                 threads=threads, label=run.name))
        for run in runs:
            if run.key not in todo_keys:
                store.prepare(run)  # keeps the suite -> run map current
        with_figures = first_seeds(runs)
        progress.start(len(tasks), report.skipped, f"{suite.name} ({suite.profile or 'default'})")
        try:
            for outcome in runner.run(tasks, progress.on_event):
                run = by_key[outcome.key]
                if outcome.status == "skipped":  # e.g. another driver holds the run
                    progress.run_done(run.name, "skipped", outcome.reason, outcome.wall_time)
                    report.failed.append((run.name, f"skipped: {outcome.reason}"))
                    continue
                if outcome.archive is not None:
                    unpack_dir(outcome.archive, store.run_dir(run.key))
                store.record(run, outcome.status, outcome.reason, outcome.wall_time)
                # Published at once, so an interrupted suite loses no finished run.
                export_run(run, store, leaderboard_dir, name, run.key in with_figures)
                progress.run_done(run.name, outcome.status, outcome.reason, outcome.wall_time)
                if outcome.status == "finished":
                    report.finished += 1
                if outcome.reason:  # a failed run, or a finished one with a failed metric
                    report.failed.append((run.name, outcome.reason))
        finally:
            progress.close()
        for run in earlier_failures:  # they still count against the exit code
            reason = store.status(run.key)[1]
            report.failed.append((run.name, f"{reason} (earlier run; --retry-failed retries it)"))
        export(runs, store, leaderboard_dir, name)
        report.leaderboard = write_leaderboard(path, profile, leaderboard_dir, suite)
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report
