"""The default executor: runs tasks on this machine, in-process or in a pool."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for_sentinels
from multiprocessing.managers import SyncManager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from pydantic import Field

from benchbed import hookimpl
from benchbed.plugin_api.components import Executor, Params
from benchbed.errors import WorkStopped
from benchbed.events import OnEvent, WorkerDied
from benchbed.run.tasks import RunTask, TaskOutcome, watch_parent
from benchbed.run.worker import execute


@dataclass(frozen=True)
class _Began:
    """A worker tells the driver it has begun a task (not forwarded to on_event),
    so the driver knows which tasks were really running when a worker died."""

    key: str
    pid: int


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; cgroup/taskset aware), at most
    ``OMP_NUM_THREADS`` when that is set: the usual way to share a machine."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cores, int(limit)) if limit.isdigit() and int(limit) > 0 else cores


def _forwarding_execute(task: RunTask, events: "queue.Queue") -> TaskOutcome:
    def forward(event: Any) -> None:
        try:
            events.put(event)
        except Exception:  # progress is best-effort; the run goes on without it
            pass

    # Synchronous (a manager round trip): once a worker dies, the driver finds
    # this in the queue for every task the worker had begun.
    forward(_Began(task.key, os.getpid()))
    return execute(task, forward)


@contextlib.contextmanager
def _ignoring(signum: int | None) -> Iterator[None]:
    """Ignore a signal for a while (main thread only; None: no such signal here).

    SIGINT while workers start: they inherit SIG_IGN from their first
    instruction, and cleanup is not cut short. SIGPIPE while a pool runs:
    Python's default (EPIPE raises BrokenPipeError), so that writing to the
    pipe of a worker that just died cannot kill the driver without a word.
    """
    if signum is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _sigint_ignored() -> contextlib.AbstractContextManager:
    return _ignoring(signal.SIGINT)


@contextlib.contextmanager
def _sigint_blocked_for_children() -> Iterator[None]:
    """Start processes (pool workers, the queue manager) with SIGINT blocked.

    They inherit this thread's signal mask, so a Ctrl-C never reaches them
    (they are the driver's to stop), not even before their initializer runs.
    The driver does not lose one meanwhile, as it would under SIG_IGN: the
    signal stays pending, or another thread of this process takes it, and
    KeyboardInterrupt is raised here as usual.
    """
    if not hasattr(signal, "pthread_sigmask"):
        with _sigint_ignored():
            yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _sigpipe_ignored() -> contextlib.AbstractContextManager:
    return _ignoring(getattr(signal, "SIGPIPE", None))


def _stop_pool(pool: ProcessPoolExecutor, timeout: float = 5.0) -> None:
    """Cancel queued tasks and end the workers now (in-flight runs keep their
    last checkpoint and resume next time)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    # Wait on sentinels, not join(): the pool's own thread reaps these processes.
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if p.sentinel is not None]
    while alive and time.monotonic() < deadline:
        ended = set(wait_for_sentinels([p.sentinel for p in alive], deadline - time.monotonic()))
        alive = [p for p in alive if p.sentinel not in ended]
    for process in alive:
        with contextlib.suppress(Exception):
            process.kill()


def _broke(future: Future) -> bool:
    """The future failed because its pool broke (a worker process died)."""
    return future.cancelled() or (future.done() and isinstance(future.exception(), BrokenProcessPool))


class LocalExecutor(Executor):
    """Runs each task on this machine.

    With ``jobs: 1`` tasks run one after another in this process. With more,
    a pool of ``jobs`` worker processes (spawned, so no state leaks between
    runs) runs them side by side; each run gets ``cores // jobs`` torch
    threads. Progress events travel back through a queue.

    Ctrl-C stops the workers at once and starts no queued run (interrupted
    runs resume from their last checkpoint next time). A worker that dies
    (killed, out of memory) is replaced and its run retried; a run whose
    worker died more than ``max_worker_deaths`` times is reported failed.

    Params: ``jobs`` (parallel runs, default 1), ``max_worker_deaths``
    (retries of a run whose worker died, default 2).
    """

    cli_shorthands = {"jobs": "jobs"}

    class Params(Params):
        jobs: int = Field(1, ge=1, description="runs in parallel on this machine")
        max_worker_deaths: int = Field(
            2, ge=0, description="retries of a run whose worker process died (killed, out of "
                                 "memory) before it is reported failed")

    def threads_per_task(self) -> int:
        return max(1, available_cores() // self.params.jobs)

    def run(self, tasks: Sequence[RunTask],
            on_event: OnEvent) -> Iterator[TaskOutcome]:
        if self.params.jobs == 1:
            for task in tasks:
                yield execute(task, on_event)
            return
        with _sigpipe_ignored():
            yield from self._run_pool(list(tasks), on_event)

    def _new_pool(self, context: Any) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.params.jobs, mp_context=context,
                                   initializer=watch_parent, initargs=(os.getpid(),))

    def _run_pool(self, tasks: list[RunTask],
                  on_event: OnEvent) -> Iterator[TaskOutcome]:
        context = multiprocessing.get_context("spawn")
        manager = SyncManager(ctx=context)
        with _sigint_blocked_for_children():
            # watch_parent (not defined here): the manager imports no torch.
            manager.start(watch_parent, (os.getpid(),))
        events = manager.Queue()
        began: set[str] = set()  # tasks whose current attempt a worker has begun
        markers_lost = False  # the event queue broke: who began what is unknown

        def drain() -> None:
            nonlocal markers_lost
            while True:
                try:
                    event = events.get_nowait()
                except queue.Empty:
                    return
                except Exception:  # the manager is gone (EOFError, OSError, ...)
                    markers_lost = True
                    return
                if isinstance(event, _Began):
                    began.add(event.key)
                else:
                    on_event(event)

        todo = deque(tasks)  # not handed to a pool yet
        running: dict[Future, RunTask] = {}
        deaths: dict[str, int] = {}
        idle_breaks = 0  # pools broken in a row before any of their tasks began
        pool: ProcessPoolExecutor | None = None
        try:
            while todo or running:
                if pool is None:
                    pool = self._new_pool(context)
                # Hand out only as many tasks as there are workers: the rest stay
                # here, so an interrupt or a broken pool never touches them.
                broken = False
                while todo and len(running) < self.params.jobs:
                    task = todo.popleft()
                    began.discard(task.key)
                    try:
                        with _sigint_blocked_for_children():  # workers are spawned here
                            running[pool.submit(_forwarding_execute, task, events)] = task
                    except BrokenProcessPool:  # a worker died since the last look
                        todo.appendleft(task)
                        broken = True
                        break
                done, _ = wait(list(running), timeout=0 if broken else 0.2,
                               return_when=FIRST_COMPLETED)
                drain()
                if broken or any(_broke(f) for f in done):
                    # A worker died, and the pool fails every in-flight future.
                    # End all its workers (so every marker of a task they began
                    # is in the queue), then see who had begun.
                    _stop_pool(pool)
                    pool = None
                    wait(list(running), timeout=5)
                    drain()
                    done = set(running)
                outcomes, died = [], []
                for future in [f for f in running if f in done]:  # in hand-out order
                    task = running.pop(future)
                    if not future.done() or _broke(future):
                        future.cancel()
                        died.append(task)
                        continue
                    try:
                        outcomes.append(future.result())
                    except Exception as exc:  # the worker could not run or return the task
                        outcomes.append(TaskOutcome(task.key, "failed", f"{type(exc).__name__}: {exc}"))
                if died and not markers_lost and not began & {t.key for t in died}:
                    # Workers die before they begin anything (a broken environment,
                    # say): retrying would loop for ever, and no run is to blame.
                    idle_breaks += 1
                elif outcomes or died:
                    idle_breaks = 0
                retry = []
                for task in died:
                    if task.key not in began and not markers_lost:
                        retry.append(task)  # never started: no attempt to count
                        continue
                    # Any in-flight task may have been the one that killed the pool.
                    deaths[task.key] = deaths.get(task.key, 0) + 1
                    if deaths[task.key] > self.params.max_worker_deaths:
                        outcomes.append(TaskOutcome(
                            task.key, "failed",
                            f"worker process died {deaths[task.key]} times (killed or out of memory)"))
                    else:
                        retry.append(task)
                        on_event(WorkerDied(key=task.key, label=task.label, deaths=deaths[task.key]))
                todo.extendleft(reversed(retry))
                for outcome in outcomes:
                    yield outcome
                if idle_breaks > self.params.max_worker_deaths:
                    raise WorkStopped(
                        f"worker processes died {idle_breaks} time(s) in a row before beginning "
                        "a run (killed, out of memory, or unable to start); no run was failed")
        finally:
            # Normal end, Ctrl-C (KeyboardInterrupt here or GeneratorExit when the
            # caller stops), or an error: nothing queued may start after this.
            with _sigint_ignored(), _ignoring(getattr(signal, "SIGTERM", None)):  # a second stop
                if pool is not None:
                    if running or todo:
                        _stop_pool(pool)
                    else:
                        pool.shutdown(wait=True)
                with contextlib.suppress(Exception):
                    manager.shutdown()


@hookimpl
def register_executors(register):
    register("local", LocalExecutor)
