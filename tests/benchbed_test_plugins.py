"""Plugins that misbehave on purpose, for the harness tests.

Registered through the same hooks as any plugin (loaded with
BENCHBED_PLUGINS=benchbed_test_plugins).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from pydantic import Field

from benchbed import hookimpl
from benchbed.plugin_api.components import Loss, Objective, Params


class ExplodeAt(Objective):
    """The ELBO until step ``step``, then NaN: a run that diverges."""

    class Params(Params):
        step: int = Field(5, ge=1)

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def loss(self, model, x):
        self.seen += 1
        codes = model.codes(x)
        rec = model.decoder.log_prob(x, codes.z).mean()
        total = -rec
        if int(self.seen) >= self.params.step:
            total = total * float("nan")
        return Loss(total, {"rec": float(rec.detach())}, codes)


class _OnceAt(Objective):
    """The ELBO, but the first time it reaches ``step`` it calls ``strike``,
    leaving a marker so the second attempt runs through."""

    class Params(Params):
        step: int = Field(30, ge=1)
        marker: str

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def strike(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, model, x):
        self.seen += 1
        marker = Path(self.params.marker)
        if int(self.seen) == self.params.step and not marker.exists():
            marker.write_text(type(self).__name__)
            self.strike()
        return _elbo(model, x)


class DieOnceAt(_OnceAt):
    """The process dies (as if killed) the first time it reaches ``step``."""

    def strike(self) -> None:
        os._exit(9)


@hookimpl
def register_objectives(register):
    register("explode_at", ExplodeAt)
    register("die_once_at", DieOnceAt)


# -- for tests/test_executor_robustness.py


def _elbo(model, x) -> Loss:
    codes = model.codes(x)
    kl = codes.posterior.kl_to_standard_normal().mean()
    rec = model.decoder.log_prob(x, codes.z).mean()
    return Loss(kl - rec, {"rec": float(rec.detach()), "kl": float(kl.detach())}, codes)


class SlowElbo(Objective):
    """The ELBO, sleeping ``sleep`` seconds each step (a run long enough to
    interrupt or kill); the process training it leaves an empty file named
    by its pid in ``pid_dir``."""

    class Params(Params):
        sleep: float = Field(0.05, ge=0)
        pid_dir: str | None = None

    def loss(self, model, x):
        if self.params.pid_dir:
            Path(self.params.pid_dir, str(os.getpid())).touch()
        import time
        time.sleep(self.params.sleep)
        return _elbo(model, x)


class DieAt(Objective):
    """The ELBO, but the process dies (as if killed) at step ``step``, every time."""

    class Params(Params):
        step: int = Field(1, ge=1)

    def __init__(self, params=None, **kw):
        super().__init__(params, **kw)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def loss(self, model, x):
        self.seen += 1
        if int(self.seen) == self.params.step:
            os._exit(9)
        return _elbo(model, x)


class InterruptOnceAt(_OnceAt):
    """KeyboardInterrupt (Ctrl-C, in-process) the first time it reaches ``step``."""

    def strike(self) -> None:
        raise KeyboardInterrupt


@hookimpl(specname="register_objectives")
def register_robustness_objectives(register):
    register("slow_elbo", SlowElbo)
    register("die_at", DieAt)
    register("interrupt_once_at", InterruptOnceAt)
