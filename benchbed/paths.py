"""Where benchbed reads data and keeps runs."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "BENCHBED_DATA"
ENV_STORE = "BENCHBED_STORE"


def data_root() -> Path:
    """``$BENCHBED_DATA``, else ``~/.cache/benchbed/data``."""
    root = os.environ.get(ENV_DATA)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "benchbed" / "data"


def default_store() -> Path:
    """``$BENCHBED_STORE``, else ``./runs`` (beside the suites one runs)."""
    return Path(os.environ.get(ENV_STORE, "runs")).expanduser()
