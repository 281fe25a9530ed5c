"""Errors that reach the user as one clear message, never as a traceback."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class BenchbedError(Exception):
    """Any error caused by the user's input or environment; exit code 2 (bad input) unless a
    subclass says otherwise."""

    exit_code = 2


class WorkStopped(BenchbedError):
    """The machinery failed, not the input (workers dying, a cluster gone, a
    full disk): exit code 1, and a rerun of the same command resumes."""

    exit_code = 1


class NoSpace(WorkStopped):
    """A write failed because the device is full."""

    def __init__(self, folder):
        self.folder = Path(folder)
        super().__init__(f"no space left on the device holding {self.folder}: free some space "
                         "and run the same command again (finished runs are kept, unfinished "
                         "ones resume)")


class PluginError(BenchbedError):
    """A plugin failed to load or two plugins claimed one name."""


class UnknownComponent(BenchbedError):
    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, self.known)}"
                         f" (known: {', '.join(self.known) or 'none'})")


class DataNotFound(BenchbedError):
    """A dataset's files are missing; the message says where we looked."""


class DataCorrupted(BenchbedError):
    """A data file exists but its contents are not what they must be."""


class RunDiverged(Exception):
    """Training produced a non-finite loss or parameter."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    matches = difflib.get_close_matches(str(word), candidates, n=3, cutoff=0.6)
    if not matches:  # a difference of case alone ('VAE' for 'vae')
        matches = [c for c in candidates if str(c).lower() == str(word).lower()]
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(m) for m in matches) + "?)"
