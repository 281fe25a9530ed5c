"""Shared helpers for the built-in datasets: where data lives, IDX files,
checksums, the in-process cache and the "not found" message.

No hooks here: this module is imported by the dataset plugins
(``benchbed_plugins.datasets.mnist``, ``fashion_mnist``, ...).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from benchbed.errors import DataCorrupted, DataNotFound  # noqa: F401 (re-exported)
from benchbed.files import atomic_write
from benchbed.paths import ENV_DATA, data_root

# torchvision's file names for the MNIST family (MNIST, FashionMNIST, ...).
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_IDX_FILES: tuple[str, ...] = tuple(name for pair in IDX_FILES.values() for name in pair)

# IDX magic numbers: 0x0000 08 (uint8) 0N (number of dimensions).
IDX_MAGIC_UINT8_1D = 0x00000801
IDX_MAGIC_UINT8_3D = 0x00000803




def resolve_root(root: str | None) -> Path:
    """The dataset's ``root`` param when given, else benchbed's data root."""
    return Path(root).expanduser() if root else data_root()


def root_hint(root: str | None) -> str:
    """How the data root was chosen, for error messages."""
    if root:
        return "the dataset's `root` param"
    return f"${ENV_DATA}" if os.environ.get(ENV_DATA) else f"the default (set ${ENV_DATA} to change it)"


def not_found(dataset: str, looked: Sequence[str], how: str) -> DataNotFound:
    """A DataNotFound whose message lists every place looked and how to get the data."""
    lines = [f"{dataset}: data not found. Looked in:"]
    lines += [f"  - {place}" for place in looked]
    lines.append(how)
    return DataNotFound("\n".join(lines))


def download_with_torchvision(dataset_cls, root: Path) -> str | None:
    """Let a torchvision MNIST-style dataset download itself into ``root``.

    Returns None on success, else the error in one short line (offline
    machines fail fast on name resolution). Empty folders left by a failed
    attempt are removed again.
    """
    raw = root / dataset_cls.__name__ / "raw"
    try:
        dataset_cls(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types; the caller goes on
        remove_empty_dirs(raw, stop=root)
        text = " ".join(str(exc).split())
        return f"{type(exc).__name__}: {text[:300]}"
    return None


def remove_empty_dirs(folder: Path, stop: Path) -> None:
    """rmdir ``folder`` and its parents while they are empty, up to ``stop``."""
    folder, stop = folder.resolve(), stop.resolve()
    while folder != stop and stop in folder.parents and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# ----------------------------------------------------------------- IDX files


def ensure_plain_idx(raw: Path, names: Iterable[str] = ALL_IDX_FILES) -> bool:
    """Make sure every IDX file in ``raw`` exists uncompressed.

    torchvision's MNIST readers only read uncompressed files; where only
    ``<name>.gz`` is present we decompress it beside itself with torchvision's
    own ``extract_archive`` (the step its download performs). Returns whether
    all files are now present.
    """
    from torchvision.datasets.utils import extract_archive

    for name in names:
        plain, packed = raw / name, raw / f"{name}.gz"
        if plain.is_file():
            continue
        if not packed.is_file():
            return False
        extract_archive(str(packed), str(raw))
    return all((raw / name).is_file() for name in names)


def copy_idx_gz(src: Path, raw: Path, names: Iterable[str] = ALL_IDX_FILES) -> None:
    """Decompress ``src/<name>[.gz]`` into ``raw/<name>`` (for read-only sources)."""
    import gzip

    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (raw / name).is_file():
            continue
        packed, plain = src / f"{name}.gz", src / name
        opener = gzip.open if packed.is_file() else open
        with opener(packed if packed.is_file() else plain, "rb") as fh:
            write_atomically(raw / name, fh.read())


def idx_files_present(folder: Path, names: Iterable[str] = ALL_IDX_FILES) -> bool:
    """Every file is there, plain or gzipped."""
    return all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in names)


def write_atomically(path: Path, payload: bytes) -> None:
    """Write to a temporary file and rename, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, payload)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array of 1 or 3 dimensions (big-endian header)."""
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"IDX writer takes uint8 arrays of 1 or 3 dims, got {array.dtype} {array.shape}")
    magic = IDX_MAGIC_UINT8_1D if array.ndim == 1 else IDX_MAGIC_UINT8_3D
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def sha256_of(tensor: Tensor) -> str:
    """sha256 of a tensor's bytes as uint8 (labels are hashed as stored in IDX)."""
    return hashlib.sha256(tensor.to(torch.uint8).contiguous().numpy().tobytes()).hexdigest()


def file_stamp(paths: Iterable[Path]) -> tuple:
    """(path, size, mtime) of each file: part of cache keys, so edited files reload."""
    stamp = []
    for p in paths:
        st = p.stat()
        stamp.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


# ----------------------------------------------------------------- the cache

# Loaded data kept for the life of the process, keyed by source files. We keep
# the compact stored form (uint8 pixels, int64 labels) and build fresh float
# tensors on every load, so a caller that edits its tensors in place cannot
# poison later loads.
_CACHE: dict[Hashable, Any] = {}


def cached(key: Hashable, read: Callable[[], Any]) -> Any:
    """``read()`` once per key and process; later calls return the same object."""
    if key not in _CACHE:
        _CACHE[key] = read()
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded dataset (tests use this to time cold loads)."""
    _CACHE.clear()


def to_unit_float(pixels: Tensor, levels: float = 255.0) -> Tensor:
    """uint8 pixels -> float32 in [0, 1] (pixel / levels)."""
    return pixels.to(torch.float32).div_(levels)
