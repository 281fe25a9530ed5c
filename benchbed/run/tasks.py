"""A run task and its outcome: plain picklable data that any executor carries to a worker
(which calls ``benchbed.run.worker.execute``) and back. Imports no torch."""

from __future__ import annotations

import io
import os
import signal
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class RunTask:
    key: str
    config: dict[str, Any]  # the fully resolved run config (JSON-able)
    run_dir: str  # where the worker writes the run's files
    cache_dir: str  # shared caches (classifiers, FID statistics)
    threads: int = 1  # torch intra-op threads for this run
    label: str = ""  # human-readable name for progress lines


@dataclass
class TaskOutcome:
    key: str
    # "skipped": another process holds the run folder's lock and is running it;
    # nothing was done and nothing should be recorded.
    status: Literal["finished", "failed", "skipped"]
    reason: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_time: float = 0.0
    # The run folder packed as a tar archive, for executors whose workers do
    # not share the driver's filesystem; None when files were written in place.
    archive: bytes | None = None
    # The machine stopped the run (a full disk), not the run itself: nothing
    # was recorded as failed, and the driver stops rather than go on.
    stopped: bool = False


def pack_dir(path: str | Path) -> bytes:
    """A run folder as tar bytes (for shipping through an object store)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(path), arcname=".")
    return buffer.getvalue()


def unpack_dir(archive: bytes, path: str | Path) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(str(path), filter="data")


def watch_parent(parent: int) -> None:
    """Initializer for an executor's helper processes (pool workers, a queue
    manager): Ctrl-C is the driver's to handle (it reaches the whole process
    group), and the process ends when the driver does, even one that was
    killed (its run resumes next time)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)
