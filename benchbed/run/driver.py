"""suite -> plan -> execute -> record -> leaderboard, for ``benchbed run``."""

from __future__ import annotations

import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbed.publish.deviations import deviations_for, flatten
from benchbed.errors import BenchbedError, NoSpace, WorkStopped, did_you_mean
from benchbed.files import atomic_write, file_lock, is_no_space, remove_stale_temps, temp_name
from benchbed.plan.executor_spec import resolve_executor
from benchbed.publish.leaderboard import record_slug, render
from benchbed.plan.loaded import LoadedSuite
from benchbed.plan.runs import PlannedRun
from benchbed.plugin_api.registry import LOCAL_MODULE, get_registry
from benchbed.run.progress import PlainProgress
from benchbed.publish.records import (BadRecord, export, export_run, first_seeds, not_finite_values,
                                      read_records, records_dir, shown_not_finite)
from benchbed.run.store import LOCK, Store, metric_hashes
from benchbed.run.tasks import RunTask, TaskOutcome, unpack_dir
from benchbed.suite.source import publish_name


@dataclass
class SuiteReport:
    total: int
    skipped: int
    finished: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run name, reason)
    metric_failed: list[tuple[str, str]] = field(default_factory=list)  # finished, a metric failed
    elsewhere: list[str] = field(default_factory=list)  # runs another process is running
    problems: list[str] = field(default_factory=list)  # damaged record files, skipped
    leaderboard: Path | None = None
    seconds: float = 0.0


def _without(record: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The record without any trace of these metrics: values, failures, later evaluations."""
    prov = dict(record.get("provenance") or {})
    if prov.get("evaluated"):
        evaluated = {c: [k for k in ks if k not in keys] for c, ks in prov["evaluated"].items()}
        prov["evaluated"] = {c: ks for c, ks in evaluated.items() if ks}
        if not prov["evaluated"]:
            del prov["evaluated"]
    return {**record, "provenance": prov,
            "metrics": {k: v for k, v in record["metrics"].items() if k not in keys},
            "metric_errors": {k: v for k, v in (record.get("metric_errors") or {}).items() if k not in keys},
            "not_finite": [f"{m}/{v} = {x}" for (m, v), x in not_finite_values(record).items()
                           if m not in keys]}


def _command(path: Path, profile: str | None, default: str | None, leaderboard_dir: Path) -> str:
    """The suite path as seen from the folder holding leaderboards/ (the
    repository root), so the page does not depend on how the path was typed;
    shell-quoted, so the command can be pasted."""
    base = leaderboard_dir.resolve().parent
    try:
        shown = path.resolve().relative_to(base).as_posix()
    except ValueError:
        shown = path.resolve().as_posix()
    flag = f" --profile {shlex.quote(profile)}" if profile and profile != default else ""
    return f"{shlex.quote(shown)}{flag}"


def check_output_folder(path: Path, option: str) -> None:
    """Refuse, before any work, a folder that cannot be written (``option``
    names the flag in the message)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise BenchbedError(f"{option} {path}: {where}, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_name(path / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpace(path) from None
        raise BenchbedError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None


@dataclass
class Leaderboard:
    path: Path | None  # None: nothing written (no current records)
    records: int  # record files read
    bad: list[BadRecord]
    stale: int = 0  # of them, records of an older config, left out of the page
    stale_why: list[str] = field(default_factory=list)  # what differs, most common first


def build_leaderboard(loaded: LoadedSuite, leaderboard_dir: Path) -> Leaderboard:
    """Render NAME.md from the suite and its committed records; damaged
    record files are skipped (and returned), and with no record at all
    nothing is written."""
    suite, default = loaded.suite, loaded.default_profile
    name = publish_name(suite.name, suite.profile, default)
    planned = {r.slug: r for r in loaded.runs}
    found, bad = read_records(leaderboard_dir, name)
    if not found:
        return Leaderboard(None, 0, bad)
    records, stale, stale_metrics, why = [], [], Counter(), Counter()
    for record in found:
        slug = record_slug(record)
        run = planned.get(slug)
        if run is None or run.key != record["run_key"]:
            # an older config of a planned run, or a run the suite no longer plans
            stale.append(slug)
            why.update([_stale_why(record, run)])
            continue
        # A metric the suite now defines otherwise: its old value must not show under the new name.
        wanted = metric_hashes(run.evaluation)
        had = metric_hashes(record.get("evaluation") or run.evaluation)
        older = sorted(k for k in wanted if k in had and had[k] != wanted[k])  # values and failures alike
        if older:
            record = _without(record, older)
            stale_metrics.update(older)
        records.append(record)
    stale_why = [f"{n} × {text}" for text, n in why.most_common()]
    if not records:  # only stale ones: a page of dashes would overwrite the last good one
        return Leaderboard(None, len(found), bad, len(stale), stale_why)
    target = leaderboard_dir / f"{name}.md"
    args = _command(loaded.path, suite.profile, default, leaderboard_dir)
    # Components from modules named by --plugin: the commands need them named again.
    local = sorted({name.removeprefix(f"{LOCAL_MODULE} ") for run in loaded.runs
                    for name in [*run.config["code"], *(n for code in run.evaluation.get("code", {}).values()
                                                        for n in code)]
                    if name.startswith(f"{LOCAL_MODULE} ")})
    benchbed = "benchbed" + "".join(f" --plugin {shlex.quote(module)}" for module in local)
    text = render(suite, records, figure_root=f"{name}/figures",
                  deviations=deviations_for(loaded), run_command=f"{benchbed} run {args}",
                  leaderboard_command=f"{benchbed} leaderboard {args}", stale=sorted(stale),
                  planned=len(planned), stale_metrics=dict(sorted(stale_metrics.items())))
    target.parent.mkdir(parents=True, exist_ok=True)
    for folder in (target.parent, records_dir(leaderboard_dir, name)):
        remove_stale_temps(folder)  # a killed writer's: never committed
    atomic_write(target, text)
    return Leaderboard(target, len(found), bad, len(stale), stale_why)


def _stale_why(record: dict[str, Any], run: PlannedRun | None) -> str:
    """What makes a record stale, in a few words: the settings that differ from the suite's now."""
    if run is None:
        return "a run the suite no longer plans"
    then, now = flatten(record.get("config") or {}), flatten(run.config)
    changed = [f"{k} {then.get(k, 'unset')} → {now.get(k, 'unset')}" for k in sorted(then.keys() | now.keys())
               if then.get(k) != now.get(k)]
    return ("; ".join(changed[:3]) + (f" (and {len(changed) - 3} more)" if len(changed) > 3 else "")
            if changed else "another run key for the same settings (an older benchbed)")


def _published_complete(run: PlannedRun, record: dict[str, Any] | None) -> bool:
    """A committed record counts as done (runs resume across machines through
    git): same key, finished, and evaluated with this suite's metric specs."""
    if record is None or record.get("status") != "finished":
        return False
    return (record.get("evaluation") == run.evaluation
            and set(run.evaluation.get("metrics", {})) <= set(record.get("metrics", {})))


def run_suite(loaded: LoadedSuite, store_root: Path, executor: dict[str, Any],
              progress: PlainProgress, leaderboard_dir: Path, retry_failed: bool = False,
              only: list[str] | None = None, rerun_published: bool = False,
              wait: bool = False, store_named: str = "--store") -> SuiteReport:
    """Run what the suite still needs; ``wait``: runs another process is
    running are waited for (else they are left to it and reported); ``store_named``:
    where the store was given, for messages (``--store``, ``$BENCHBED_STORE``)."""
    started = time.monotonic()
    registry = get_registry()
    suite = loaded.suite
    # ``executor``: the caller's choices (``name`` optional) over the suite's own.
    executor_spec = resolve_executor(suite.executor, executor, registry)
    runs = loaded.runs
    if only:
        enabled = [k for k, m in suite.methods.items() if m.enabled]
        for m in only:
            if m not in enabled:
                what = "is disabled in this suite" if m in suite.methods else "is not in this suite"
                raise BenchbedError(f"--only: method {m!r} {what}{did_you_mean(m, enabled)}"
                                    f" (enabled methods: {', '.join(enabled) or 'none'})")
        runs = [r for r in runs if r.method in only]
    check_output_folder(store_root, store_named)
    check_output_folder(leaderboard_dir, "--leaderboards")
    store = Store(store_root, say=progress.say)
    name = publish_name(suite.name, suite.profile, loaded.default_profile)
    found, bad = read_records(leaderboard_dir, name)
    for problem in bad:
        progress.say(f"warning: {problem}")
    # Committed records count as done, unless the user wants to repeat them.
    published = {} if rerun_published else {r["run_key"]: r for r in found}
    try:
        todo = [r for r in runs if store.needs_work(r, retry_failed)
                and not _published_complete(r, published.get(r.key))]
        todo_keys = {r.key for r in todo}
        earlier_failures = [r for r in runs if r.key not in todo_keys and store.status(r.key)[0] == "failed"]
        report = SuiteReport(total=len(runs), skipped=len(runs) - len(todo) - len(earlier_failures),
                             problems=[str(b) for b in bad])
        runner = registry.create("executor", executor_spec)
        threads = runner.threads_per_task()
        by_key = {run.key: run for run in todo}
        for run in runs:
            store.prepare(run)  # the run folder, and the index's suite -> run map
        tasks = _tasks_for(todo, store, threads)
        with_figures, shown = first_seeds(runs), suite.shown_values()
        progress.start(len(tasks), report.skipped, f"{suite.name} ({suite.profile or 'default'})")
        try:
            while tasks:
                busy = []
                for outcome in _checked(runner.run(tasks, progress.on_event), tasks, executor_spec["name"],
                                        report, progress.say):
                    run = by_key[outcome.key]
                    if outcome.status == "skipped":  # another process holds the run's lock
                        progress.run_done(run.name, "running elsewhere", outcome.reason,
                                          outcome.wall_time)
                        busy.append(run)
                        continue
                    if outcome.stopped:  # a full disk: nothing recorded, the run resumes later
                        raise WorkStopped(outcome.reason or "the run was stopped")
                    if outcome.archive is not None:
                        unpack_dir(outcome.archive, store.run_dir(run.key))
                    store.record(run, outcome.status, outcome.reason, outcome.wall_time)
                    # Published at once, so an interrupted suite loses no finished run.
                    record = export_run(run, store, leaderboard_dir, name, run.key in with_figures)
                    reason = outcome.reason
                    if outcome.status == "finished" and record is not None:
                        # A value the page reads that came back nan or inf fails its cell there: say so here too.
                        bad = [f"{m}/{v} = {x}" for (m, v), x in shown_not_finite(record, shown).items()]
                        reason = "; ".join([*([reason] if reason else []),
                                            *([f"not a finite number: {', '.join(bad)}"] if bad else [])])
                    progress.run_done(run.name, outcome.status, reason, outcome.wall_time)
                    if outcome.status == "finished":
                        report.finished += 1
                    if reason:  # a failed run, or a finished one with a failed metric
                        (report.metric_failed if outcome.status == "finished" else report.failed).append(
                            (run.name, reason))
                if not wait:
                    report.elsewhere = [run.name for run in busy]
                    break
                tasks = []
                for run in busy:
                    progress.say(f"waiting for {run.name}, which another process is running...")
                    with file_lock(store.run_dir(run.key) / LOCK):  # Ctrl-C still interrupts the wait
                        pass
                    status, reason = store.status(run.key)
                    if store.needs_work(run, retry_failed):
                        tasks += _tasks_for([run], store, threads)
                    elif status == "failed":  # and failed it
                        report.failed.append((run.name, f"{reason} (run by another process)"))
                    else:  # the other process finished it
                        report.skipped += 1
                progress.total = progress.done + len(tasks)
        finally:
            progress.close()
        for run in earlier_failures:  # they still count against the exit code
            reason = store.status(run.key)[1]
            report.failed.append((run.name, f"{reason} (earlier run; --retry-failed retries it)"))
        export(runs, store, leaderboard_dir, name)
        board = build_leaderboard(loaded, leaderboard_dir)
        report.leaderboard = board.path
        for problem in map(str, board.bad):
            if problem not in report.problems:  # said once, when first seen
                progress.say(f"warning: {problem}")
                report.problems.append(problem)
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


def _checked(outcomes: Any, tasks: list[RunTask], executor: str, report: SuiteReport,
             say: Any) -> Any:
    """An executor plugin's outcomes, held to its contract: one TaskOutcome per task given. A
    broken one stops the work with one line naming it; a task never reported counts as failed
    (nothing recorded, so the next run does it)."""
    given = {task.key: task.label for task in tasks}
    seen: set[str] = set()
    try:
        for outcome in outcomes:
            if not isinstance(outcome, TaskOutcome) or outcome.key not in given:
                raise WorkStopped(f"executor {executor!r} reported {outcome!r}, which is not the "
                                  "TaskOutcome of a task it was given: a bug in that executor plugin")
            if outcome.key in seen:
                say(f"warning: executor {executor!r} reported {given[outcome.key]} twice; "
                    "the second report is ignored")
                continue
            seen.add(outcome.key)
            yield outcome
    except (BenchbedError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if is_no_space(exc):
            raise
        raise WorkStopped(f"executor {executor!r} failed: {type(exc).__name__}: {exc}") from exc
    for key in given.keys() - seen:
        report.failed.append((given[key], f"executor {executor!r} never reported it (nothing "
                                          "recorded: run again to do it)"))


def _tasks_for(runs: list[PlannedRun], store: Store, threads: int) -> list[RunTask]:
    return [RunTask(key=run.key, config={**run.config, "evaluation": run.evaluation},
                    run_dir=str(store.run_dir(run.key).resolve()),
                    cache_dir=str(store.cache_dir.resolve()), threads=threads, label=run.name)
            for run in runs]
