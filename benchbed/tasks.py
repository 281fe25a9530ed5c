"""What a third-party executor uses, at its documented path: ``RunTask`` and
``TaskOutcome`` (``benchbed.run.tasks``) and ``execute`` (``benchbed.run.worker``),
with ``pack_dir``, ``unpack_dir`` and ``watch_parent``."""

from benchbed.run.tasks import RunTask, TaskOutcome, pack_dir, unpack_dir, watch_parent  # noqa: F401
from benchbed.run.worker import execute  # noqa: F401
