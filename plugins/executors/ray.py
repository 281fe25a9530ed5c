"""The "ray" executor: every run is a Ray task somewhere on a Ray cluster.

Ray is optional and imported only when a ``RayExecutor`` is built, so this
plugin registers (and ``benchbed plugins`` lists it) without Ray installed.
See docs/scale-out.md for how artifacts travel, resources, resumption,
retries and a multi-machine example.
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import signal
import socket
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

from pydantic import ByteSize, Field

from benchbed import hookimpl
from benchbed.plugin_api.components import Executor, Params
from benchbed.errors import BenchbedError, WorkStopped
from benchbed.events import ClusterStatus, Event, OnEvent, Placed, Stepped
from benchbed.run.tasks import RunTask, TaskOutcome, pack_dir, unpack_dir
from benchbed.run.worker import execute

INSTALL_HINT = "pip install 'benchbed[ray]'"
PROBE_NAME = ".ray-shared-probe"  # in the store's cache dir: a worker that reads it shares our files
# The driver forwards these to every worker, so `--plugin MODULE` reaches the cluster too.
FORWARDED_ENV = ("BENCHBED_PLUGINS", "BENCHBED_DISABLE_PLUGIN_AUTOLOAD")
POLL_SECONDS = 0.5  # how long the driver waits for an outcome before draining events
FLUSH_SECONDS = 1.0  # how often a worker sends its buffered step events


def import_ray() -> Any:
    """Ray, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BenchbedError(f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


# ----------------------------------------------------------------- worker side


class EventForwarder:
    """Sends a run's progress events to the driver's queue.

    Step events are buffered and sent at most every ``FLUSH_SECONDS``; every
    other event (start, epoch, metric, done) goes at once with the buffer.
    Sends are not awaited, and a lost queue (the driver went away) only
    silences progress, never the run. Sends from one worker arrive in order.
    """

    def __init__(self, queue: Any):
        self.queue = queue
        self.buffer: list[Event] = []
        self.last_flush = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.buffer.append(event)
        if not isinstance(event, Stepped) or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.buffer and self.queue is not None:
            try:
                # Fire and forget: a task blocked in ray.get lends its CPU back to Ray,
                # which then starts another worker process beside it (and reloads the data).
                self.queue.actor.put_nowait_batch.remote(self.buffer)
            except Exception:  # progress is best effort
                self.queue = None
        self.buffer = []
        self.last_flush = time.monotonic()


def sees_driver_files(probe: tuple[str, str]) -> bool:
    """Whether this worker reads the probe file the driver wrote (same filesystem)."""
    path, token = probe
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def local_cache_dir(driver_cache: str) -> str:
    """The driver's cache path when this machine can use it, else a per-node temp cache."""
    try:
        Path(driver_cache).mkdir(parents=True, exist_ok=True)
        if os.access(driver_cache, os.W_OK):
            return driver_cache
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / "benchbed-cache"
    fallback.mkdir(parents=True, exist_ok=True)
    return str(fallback)


def run_on_worker(task: RunTask, shared: bool | tuple[str, str], seed: bytes | None,
                  queue: Any) -> TaskOutcome:
    """The body of each Ray task: execute the run, in place or in a scratch folder.

    ``shared`` is True (write in place), False (work in a temp dir and ship the
    folder back) or a probe ``(path, token)`` that decides between the two.
    ``seed`` is the driver's run folder (a checkpoint, weights, metrics), packed,
    for runs that resume on a machine that cannot see it.
    """
    forward = EventForwarder(queue)
    forward(Placed(key=task.key, label=task.label, node=socket.gethostname(), pid=os.getpid()))
    try:
        in_place = sees_driver_files(shared) if isinstance(shared, tuple) else shared
        if in_place:
            return execute(task, forward)
        with tempfile.TemporaryDirectory(prefix="benchbed-run-") as scratch:
            if seed is not None:
                unpack_dir(seed, scratch)
            local = dataclasses.replace(task, run_dir=scratch, cache_dir=local_cache_dir(task.cache_dir))
            outcome = execute(local, forward)
            outcome.archive = pack_dir(scratch)
            return outcome
    finally:
        forward.flush()


_REMOTE: Any = None


def remote_run_on_worker(ray: Any) -> Any:
    """``run_on_worker`` as a Ray remote function (made once, after Ray is imported)."""
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(run_on_worker)
    return _REMOTE


# ----------------------------------------------------------------- driver side


def archive_files(archive: bytes) -> set[str]:
    """Relative paths of the regular files in a ``pack_dir`` archive."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {os.path.normpath(m.name) for m in tar.getmembers() if m.isfile()}


NOT_STATE = {"config.json", ".lock"}  # what every prepared (or once locked) run folder holds


def has_state(run_dir: Path) -> bool:
    """Whether a run folder holds anything a worker needs (a checkpoint, weights, metrics, logs)."""
    return run_dir.is_dir() and any(p.name not in NOT_STATE for p in run_dir.iterdir())


class ClusterTally:
    """Where each task stands, from the driver's point of view."""

    def __init__(self, keys: Sequence[str]):
        self.waiting = set(keys)
        self.placed: set[str] = set()
        self.finished = self.failed = 0

    def saw(self, event: Event) -> None:
        if isinstance(event, Placed) and event.key in self.waiting:
            self.placed.add(event.key)

    def done(self, outcome: TaskOutcome) -> None:
        self.waiting.discard(outcome.key)
        self.placed.discard(outcome.key)
        if outcome.status == "finished":
            self.finished += 1
        else:
            self.failed += 1

    def event(self, nodes: int | None, cpus: float | None) -> ClusterStatus:
        return ClusterStatus(pending=len(self.waiting - self.placed), running=len(self.placed),
                             finished=self.finished, failed=self.failed, nodes=nodes, cpus=cpus)


def lost_outcome(task: RunTask, exc: BaseException, why: str) -> TaskOutcome:
    """A task that came back as a Ray error instead of an outcome."""
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return TaskOutcome(task.key, "failed", f"{why}: {type(exc).__name__}: {first_line}")


class RayExecutor(Executor):
    """Runs each task as a Ray task on a Ray cluster (one machine or many).

    Connects to a running cluster at ``address`` (``ray.init(address=...)``:
    "HEAD:6379", "auto", or a Ray Client "ray://HEAD:10001"), or starts a local
    one when there is no address (and no RAY_ADDRESS). Each run requests
    ``num_cpus`` / ``num_gpus`` / ``memory`` / ``resources`` from Ray's scheduler
    and gets ``max(1, int(num_cpus))`` torch threads. Workers send progress
    events to a queue that the driver drains while it waits, and the driver
    emits a ``ClusterStatus`` (pending, running, finished, failed) every
    ``status_every`` seconds.

    Artifacts: with ``shared_filesystem: true`` workers write the run folder in
    place; with ``false`` they run in a temp dir and return the folder packed
    (``TaskOutcome.archive``) through Ray's object store, and the driver
    unpacks it; a run that resumes gets the driver's folder (checkpoint,
    weights, metrics) shipped with it. ``auto`` decides per task: a worker
    that can read a probe file the driver wrote in the store writes in place.

    Retries: a task whose worker process or node dies is run again up to
    ``max_retries`` times (Ray system failures); a run that fails on its own
    merits comes back as a failed outcome and is not retried.

    Params: address, num_cpus (1), num_gpus (0), memory (none), resources ({}),
    max_retries (3), shared_filesystem ("auto"), runtime_env (none),
    local_cpus / object_store_memory / dashboard (for a local cluster only),
    status_every (30 s), worker_logs (false).
    """

    cli_shorthands = {"address": "address"}

    class Params(Params):
        address: str | None = Field(
            None, description="Ray cluster to join: 'HOST:6379', 'auto' or 'ray://HOST:10001'; "
                              "none starts a local cluster (or uses RAY_ADDRESS)")
        num_cpus: float = Field(1.0, gt=0, description="CPUs each run requests (and its torch threads)")
        num_gpus: float = Field(0.0, ge=0, description="GPUs each run requests")
        memory: ByteSize | None = Field(
            None, description="memory each run requests from the scheduler, e.g. '4GiB' (none: no request)")
        resources: dict[str, float] = Field(
            {}, description="custom Ray resources each run requests, e.g. {'bigmem': 1}")
        max_retries: int = Field(
            3, ge=-1, description="re-runs of a task whose worker or node died (-1: forever)")
        shared_filesystem: bool | Literal["auto"] = Field(
            "auto", description="true: workers write the store in place; false: they ship the run "
                                "folder back through the object store; auto: per task, by a probe file")
        runtime_env: dict[str, Any] | None = Field(
            None, description="Ray runtime_env for the job (e.g. pip, py_modules, env_vars)")
        local_cpus: int | None = Field(
            None, gt=0, description="CPUs of a local cluster started without an address (none: all)")
        object_store_memory: ByteSize | None = Field(
            None, description="object store size of a local cluster started without an address")
        dashboard: bool = Field(False, description="start Ray's dashboard with a local cluster")
        status_every: float = Field(30.0, gt=0, description="seconds between cluster status lines")
        worker_logs: bool = Field(False, description="print the workers' stdout/stderr on the driver")

    def __init__(self, params: Params | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        import_ray()  # fail now, with the install hint, before any run is planned

    def threads_per_task(self) -> int:
        return max(1, int(self.params.num_cpus))

    # -- connecting

    def _runtime_env(self) -> dict[str, Any] | None:
        env = dict(self.params.runtime_env or {})
        forwarded = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        if forwarded:
            env["env_vars"] = {**forwarded, **env.get("env_vars", {})}
        return env or None

    def _connect(self, ray: Any) -> bool:
        """Join or start a cluster; True when this call started Ray (and must stop it)."""
        if ray.is_initialized():
            return False
        p = self.params
        kwargs: dict[str, Any] = {"runtime_env": self._runtime_env(), "log_to_driver": p.worker_logs,
                                  "namespace": "benchbed"}
        address = p.address or os.environ.get("RAY_ADDRESS")
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=p.local_cpus, include_dashboard=p.dashboard,
                          object_store_memory=int(p.object_store_memory) if p.object_store_memory else None)
        # ray.init replaces the driver's SIGTERM handler with sys.exit; keep the driver's, which
        # stops a run as Ctrl-C does.
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            hint = (" (is it running? If it uses token authentication, set RAY_AUTH_MODE=token and "
                    "give this machine its token: ~/.ray/auth_token or RAY_AUTH_TOKEN)" if address else "")
            raise WorkStopped(f"could not connect to {where}: {type(exc).__name__}: {exc}{hint}") from None
        finally:
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        return True

    def _cluster_size(self, ray: Any) -> tuple[int | None, float | None]:
        try:
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            return nodes, ray.cluster_resources().get("CPU", 0.0)
        except Exception:
            return None, None

    # -- submitting

    def _event_queue(self, ray: Any) -> Any:
        """A queue actor pinned to the driver's node, so losing a worker node keeps it.

        Pinned hard: a soft affinity was seen to land on other nodes now and
        then, and the driver's node lives as long as the driver does.
        """
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        here = ray.get_runtime_context().get_node_id()
        return Queue(actor_options={"num_cpus": 0, "max_restarts": 0,
                                    "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False)})

    def _write_probes(self, tasks: Sequence[RunTask]) -> dict[str, tuple[str, str]]:
        """One probe file per cache dir, with a fresh random token."""
        probes = {}
        for cache in {t.cache_dir for t in tasks}:
            path = Path(cache) / PROBE_NAME
            token = secrets.token_hex(16)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(token)
            probes[cache] = (str(path), token)
        return probes

    def _submit(self, ray: Any, task: RunTask, queue: Any,
                probes: dict[str, tuple[str, str]]) -> tuple[Any, set[str]]:
        """Start one task; returns its ref and the files shipped with it."""
        p = self.params
        mode = p.shared_filesystem
        shared = probes[task.cache_dir] if mode == "auto" else mode
        seed = None
        if mode is not True and has_state(Path(task.run_dir)):
            seed = pack_dir(task.run_dir)
        options: dict[str, Any] = {"num_cpus": p.num_cpus, "num_gpus": p.num_gpus,
                                   "max_retries": p.max_retries, "retry_exceptions": False,
                                   "name": f"benchbed:{task.label or task.key}"}
        if p.memory:
            options["memory"] = int(p.memory)
        if p.resources:
            options["resources"] = dict(p.resources)
        ref = remote_run_on_worker(ray).options(**options).remote(task, shared, seed, queue)
        return ref, archive_files(seed) if seed is not None else set()

    # -- collecting

    def _collect(self, ray: Any, ref: Any, task: RunTask, shipped: set[str]) -> TaskOutcome:
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # a bug in the worker wrapper, not a lost worker
            return lost_outcome(task, exc, "the Ray task raised")
        except ray.exceptions.RayError as exc:  # worker/node died more often than max_retries
            return lost_outcome(task, exc, f"lost on the Ray cluster after {self.params.max_retries} retries")
        if outcome.archive is not None and shipped:
            # The worker deleted these (e.g. checkpoint.pt once model.pt exists): mirror that here.
            for name in shipped - archive_files(outcome.archive):
                (Path(task.run_dir) / name).unlink(missing_ok=True)
        return outcome

    def _drain(self, queue: Any, tally: ClusterTally, on_event: OnEvent) -> None:
        try:
            size = queue.qsize()
            events = queue.get_nowait_batch(size) if size else []
        except Exception:  # the queue actor is gone: progress stops, results still come
            return
        for event in events:
            tally.saw(event)
            on_event(event)

    def run(self, tasks: Sequence[RunTask],
            on_event: OnEvent) -> Iterator[TaskOutcome]:
        if not tasks:
            return
        ray = import_ray()
        started_ray = self._connect(ray)
        queue = None
        probes: dict[str, tuple[str, str]] = {}
        pending: dict[Any, tuple[RunTask, set[str]]] = {}
        try:
            queue = self._event_queue(ray)
            if self.params.shared_filesystem == "auto":
                probes = self._write_probes(tasks)
            for task in tasks:
                ref, shipped = self._submit(ray, task, queue, probes)
                pending[ref] = (task, shipped)
            tally = ClusterTally([t.key for t in tasks])
            on_event(tally.event(*self._cluster_size(ray)))
            last_status = time.monotonic()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                if ready:  # take every other finished one too
                    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                self._drain(queue, tally, on_event)
                for ref in ready:
                    task, shipped = pending.pop(ref)
                    outcome = self._collect(ray, ref, task, shipped)
                    tally.done(outcome)
                    yield outcome
                if time.monotonic() - last_status >= self.params.status_every:
                    on_event(tally.event(*self._cluster_size(ray)))
                    last_status = time.monotonic()
            time.sleep(0.2)  # workers' last sends are not awaited: let them land
            self._drain(queue, tally, on_event)
            on_event(tally.event(*self._cluster_size(ray)))
        finally:
            for ref in pending:  # interrupted: stop what is still running
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            for path, _ in probes.values():
                Path(path).unlink(missing_ok=True)
            if queue is not None:
                try:
                    queue.shutdown(force=True)
                except Exception:
                    pass
            if started_ray:
                ray.shutdown()


@hookimpl
def register_executors(register):
    register("ray", RayExecutor)
