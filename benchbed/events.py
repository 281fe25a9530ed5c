"""Progress events from training, evaluation and executors: small frozen, picklable
dataclasses that executors forward unchanged to the driver's display (benchbed.run.progress).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Union


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    """Something that happened to one run."""

    key: str = ""
    label: str = ""

    def of(self, key: str, label: str) -> "RunEvent":
        """The same event, naming its run."""
        return replace(self, key=key, label=label)


@dataclass(frozen=True, kw_only=True)
class Started(RunEvent):
    resume: bool = False  # training resumes from a checkpoint


@dataclass(frozen=True, kw_only=True)
class Resumed(RunEvent):
    step: int
    epoch: int


@dataclass(frozen=True, kw_only=True)
class Stepped(RunEvent):
    """Training reached a logging step (every ``training.log_every`` steps)."""

    step: int
    steps: int
    epoch: int  # 1-based, the epoch under way
    epochs: int
    loss: float | None = None  # mean loss since the last logging step


@dataclass(frozen=True, kw_only=True)
class EpochEnded(RunEvent):
    epoch: int  # 1-based, the epoch just finished
    epochs: int
    step: int
    steps: int


@dataclass(frozen=True, kw_only=True)
class Evaluating(RunEvent):
    metric: str  # the suite's name for the metric


@dataclass(frozen=True, kw_only=True)
class Done(RunEvent):
    status: str


@dataclass(frozen=True, kw_only=True)
class WorkerDied(RunEvent):
    """The process running this run died; the executor runs it again."""

    deaths: int


@dataclass(frozen=True, kw_only=True)
class Placed(RunEvent):
    """A cluster scheduled this run on a worker."""

    node: str
    pid: int


@dataclass(frozen=True)
class ClusterStatus:
    """A periodic tally from a cluster executor."""

    pending: int
    running: int
    finished: int
    failed: int
    nodes: int | None = None
    cpus: float | None = None


Event = Union[RunEvent, ClusterStatus]
OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """An ``on_event`` that drops everything."""
