"""Live progress: a rich display on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from benchbed.events import (ClusterStatus, EpochEnded, Evaluating, Event, Resumed, RunEvent, Started,
                             Stepped, WorkerDied)


class PlainProgress:
    """One line per event worth a line: run start/end, epochs, metrics."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.total = self.done = self.failed = 0
        self.number: dict[str, int] = {}  # run key -> its place in the order runs began (two may run at once)
        self.started = time.monotonic()
        self.finished_seconds: list[float] = []

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total: int, skipped: int, description: str) -> None:
        self.total = total
        self.started = time.monotonic()
        self.say(f"{description}: {total} run(s) to do, {skipped} already done")

    def eta(self) -> str:
        if not self.done:
            return "?"
        left = int(max(0, (time.monotonic() - self.started) / self.done * (self.total - self.done)))
        return f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"

    def on_event(self, event: Event) -> None:
        label = (event.label or event.key) if isinstance(event, RunEvent) else ""
        if isinstance(event, Started):
            number = self.number.setdefault(event.key, len(self.number) + 1)
            self.say(f"[{number}/{self.total}] {label}: "
                     f"{'resuming from checkpoint' if event.resume else 'started'}")
        elif isinstance(event, Resumed):
            self.say(f"  {label}: resumed at step {event.step}")
        elif isinstance(event, EpochEnded):
            self.say(f"  {label}: epoch {event.epoch}/{event.epochs} (step {event.step}/{event.steps})")
        elif isinstance(event, Evaluating):
            self.say(f"  {label}: evaluating {event.metric}")
        elif isinstance(event, WorkerDied):
            self.say(f"  {label}: its worker process died ({event.deaths} time(s)); running it again")
        elif isinstance(event, ClusterStatus):  # periodic tally from a cluster executor (ray)
            where = (f" on {event.nodes} node(s), {event.cpus:g} CPU(s)"
                     if event.nodes and event.cpus is not None else "")
            self.say(f"cluster: {event.pending} pending, {event.running} running, "
                     f"{event.finished} finished, {event.failed} failed{where}")

    def run_done(self, label: str, status: str, reason: str | None, seconds: float) -> None:
        self.done += 1
        if status == "failed":  # not "running elsewhere": another process has that run
            self.failed += 1
        tail = f": {reason}" if reason else ""
        if status == "finished" and reason:  # a metric failed: the run is not simply "finished"
            status, tail = "ran", f"; {reason}"
        self.say(f"[{self.done}/{self.total}] {label}: {status} in {seconds:.0f}s{tail} "
                 f"(ETA {self.eta()})")

    def close(self) -> None:
        pass


class RichProgress(PlainProgress):
    """Suite bar (runs done/total, ETA) and a bar for the current run."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                                 console=self.console, transient=False)
        self.suite_task = None
        self.run_tasks: dict[str, Any] = {}  # run key -> rich task id
        self.run_keys: dict[str, str] = {}  # label -> run key

    def say(self, text: str) -> None:
        self.console.log(text)

    def start(self, total: int, skipped: int, description: str) -> None:
        super().start(total, skipped, description)
        self.progress.start()
        self.suite_task = self.progress.add_task(description, total=max(total, 1), detail="")

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RunEvent):
            return
        key, label = event.key, event.label
        if isinstance(event, Started) and key not in self.run_tasks:
            self.run_tasks[key] = self.progress.add_task(f"  {label}", total=None, detail="starting")
            self.run_keys[label] = key
        task = self.run_tasks.get(key)
        if task is None:
            return
        if isinstance(event, (Stepped, EpochEnded)):
            detail = f"epoch {event.epoch}/{event.epochs}"
            if isinstance(event, Stepped) and event.loss is not None:
                detail += f" loss {event.loss:.3f}"
            self.progress.update(task, total=event.steps, completed=event.step, detail=detail)
        elif isinstance(event, Evaluating):
            self.progress.update(task, detail=f"evaluating {event.metric}")

    def run_done(self, label: str, status: str, reason: str | None, seconds: float) -> None:
        if label in self.run_keys:
            self.progress.remove_task(self.run_tasks.pop(self.run_keys.pop(label)))
        super().run_done(label, status, reason, seconds)
        self.progress.update(self.suite_task, completed=self.done,
                             detail=f"{self.failed} failed" if self.failed else "")

    def close(self) -> None:
        self.progress.stop()


def make_progress(force_plain: bool = False) -> PlainProgress:
    if not force_plain and sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()
