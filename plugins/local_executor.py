"""The default executor: runs tasks on this machine, in-process or in a pool."""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

from pydantic import Field

from benchbed import hookimpl
from benchbed.components import Executor, Params
from benchbed.tasks import RunTask, TaskOutcome, execute


def _exit_with_parent(parent: int) -> None:
    """A worker whose driver was killed stops too (its run resumes next time)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


_watching: list[int] = []  # the parent this worker process already watches


def _forwarding_execute(task: RunTask, events: "queue.Queue", parent: int) -> TaskOutcome:
    if not _watching:
        _watching.append(parent)
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    return execute(task, events.put)


class LocalExecutor(Executor):
    """Runs each task on this machine.

    With ``jobs: 1`` tasks run one after another in this process. With more,
    a pool of ``jobs`` worker processes (spawned, so no state leaks between
    runs) runs them side by side; each run gets ``cores // jobs`` torch
    threads. Progress events travel back through a queue.

    Params: ``jobs`` (parallel runs, default 1).
    """

    class Params(Params):
        jobs: int = Field(1, ge=1, description="runs in parallel on this machine")

    def threads_per_task(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.params.jobs)

    def run(self, tasks: Sequence[RunTask],
            on_event: Callable[[dict], None]) -> Iterator[TaskOutcome]:
        if self.params.jobs == 1:
            for task in tasks:
                yield execute(task, on_event)
            return
        context = multiprocessing.get_context("spawn")
        manager = context.Manager()
        events = manager.Queue()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    on_event(events.get(timeout=0.2))
                except queue.Empty:
                    continue
                except (EOFError, OSError):
                    return

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        try:
            with ProcessPoolExecutor(max_workers=self.params.jobs, mp_context=context) as pool:
                futures = {pool.submit(_forwarding_execute, task, events, os.getpid()): task for task in tasks}
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        yield TaskOutcome(task.key, "failed", "worker process died (killed or out of memory)")
        finally:
            stop.set()
            drainer.join(timeout=2)
            manager.shutdown()


@hookimpl
def register_executors(register):
    register("local", LocalExecutor)
