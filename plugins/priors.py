"""Built-in priors p(z): the standard normal and the unit-variance logistic (VIMAE-l)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Prior

LOG_2PI = math.log(2 * math.pi)


class NormalPrior(Prior):
    """Standard normal prior p(z) = N(0, I).

    log p(z) = -1/2 sum_d (z_d^2 + log 2 pi);  score: grad log p(z) = -z.
    No params.
    """

    def sample(self, n: int, dim: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        return torch.randn((n, dim), generator=generator, device=device)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)

    def score(self, z: Tensor) -> Tensor:
        return -z


class LogisticPrior(Prior):
    """Factorised logistic prior with zero mean and unit variance per dimension (VIMAE-l).

    Each coordinate is Logistic(0, s) with s = sqrt(3) / pi, so that
    Var = pi^2 s^2 / 3 = 1 (the same variance as the normal prior, but
    leptokurtic: excess kurtosis 1.2). With y = z / s:

        log p(z) = sum_d [ -y_d - log s - 2 log(1 + exp(-y_d)) ]
        score:     d/dz log p(z) = -(1/s) tanh(y / 2)

    Sampling inverts the CDF: z = s * logit(u), u ~ U(0, 1). No params.
    """

    scale = math.sqrt(3.0) / math.pi

    def sample(self, n: int, dim: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        u = torch.rand((n, dim), generator=generator, device=device)
        # keep u off {0, 1} so the logit stays finite (float32 rand can return exactly 0)
        tiny = torch.finfo(u.dtype).tiny
        u = u.clamp(tiny, 1.0 - torch.finfo(u.dtype).eps)
        return self.scale * torch.logit(u)

    def log_prob(self, z: Tensor) -> Tensor:
        y = z / self.scale
        # -y - 2 softplus(-y) is symmetric in y and stable for large |y|
        return (-y - 2.0 * F.softplus(-y) - math.log(self.scale)).sum(-1)

    def score(self, z: Tensor) -> Tensor:
        return -torch.tanh(z / (2.0 * self.scale)) / self.scale


@hookimpl
def register_priors(register):
    register("normal", NormalPrior)
    register("logistic", LogisticPrior)
