"""Writing files safely: one atomic writer, stale temp files, disk full, locks.

Every file benchbed writes goes through ``atomic_write``: a hidden temp beside the target
(``.NAME.PID.RAND.tmp``), then ``os.replace``, so a killed writer leaves at most a stale temp
(``remove_stale_temps`` clears it), never half a file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # not on Windows: no locks there
    fcntl = None

from benchbed.errors import NoSpace

# .NAME.PID.RAND.tmp (hidden); NAME.PID.RAND.tmp was written by older versions.
_TEMP = re.compile(r"^\.?(?P<name>.+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-f]{12})\.tmp$")
NO_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _write_bytes(path: Path, data: bytes) -> None:
    """The one low-level write (tests make it fail as a full disk would)."""
    with open(path, "xb") as handle:  # "x": a fresh file, with the usual permissions
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` all at once (str is written as UTF-8).

    Concurrent writers (two drivers, a driver and a worker) each use their own
    temp file. A full disk raises ``NoSpace`` naming the folder.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    tmp = temp_name(path)
    try:
        _write_bytes(tmp, payload)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_no_space(exc):
            raise NoSpace(path.parent) from None
        raise


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """``torch.save`` through ``atomic_write``: never a truncated .pt file."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        pass
    return True


def remove_stale_temps(folder: str | Path, min_age: float = 60.0) -> list[Path]:
    """Delete temp files in ``folder`` left by killed writers; returns them.

    A temp is stale when its writer (the pid in its name) is gone and it is
    older than ``min_age`` seconds, or when it is more than a day old (a
    writer on another machine sharing the folder).
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match:
            continue
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if age > 86400 or (age > min_age and not _pid_alive(int(match["pid"]))):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The exception and those it was raised from or while handling."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_no_space(exc: BaseException | None) -> bool:
    """A full disk, however it surfaced (OSError, SQLite, torch's RuntimeError),
    anywhere in the exception's chain."""
    return any(isinstance(e, NoSpace) or (isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS)
               or (isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e))
               or (isinstance(e, RuntimeError) and "No space left on device" in str(e))
               for e in itertools.islice(_chain(exc), 10))


def as_no_space(exc: BaseException, fallback: str | Path) -> NoSpace:
    """A full-disk error as ``NoSpace``, naming the folder it was about (else ``fallback``)."""
    for e in _chain(exc):
        if isinstance(e, NoSpace):
            return e
        if isinstance(e, OSError) and e.filename:
            return NoSpace(Path(e.filename).parent)
    return NoSpace(fallback)


def set_aside(path: Path, why: str, log: Callable[[str], None] | None = None) -> Path | None:
    """Rename a damaged file to ``NAME.damaged-TIME`` (kept for inspection) and say so."""
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, target)
    except OSError:
        target = None
        with contextlib.suppress(OSError):
            path.unlink()
    if log is not None:
        log(f"{path} does not load ({why}); set aside as {target.name if target else '(removed)'}")
    return target


def load_error(exc: BaseException) -> str:
    """Why a file did not load, in one line, without torch's advice to load
    it again with ``weights_only=False`` (which would run code in the file)."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        detail = next((line.strip() for line in text.splitlines()
                       if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line), "")
        return f"holds objects other than tensors{': ' + detail if detail else ''}"
    first = (text.splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive flock on ``path`` (created if needed) while inside, freed by
    the kernel however the holder ends. Yields False at once, without the lock,
    when another process holds it and not ``wait``; else True (also where the
    filesystem has no flock: the work goes on unlocked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            except OSError:  # a filesystem without flock
                pass
        yield True
    finally:
        os.close(handle)  # releases the lock
