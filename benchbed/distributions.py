"""Posterior distributions q(z|x) returned by encoders."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


class Posterior:
    """q(z|x) for a batch: ``mean`` (N, D); ``rsample``; ``log_prob``."""

    mean: Tensor

    @property
    def latent_dim(self) -> int:
        return int(self.mean.shape[-1])

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def rsample_n(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """k reparameterised samples per row: shape (k, N, D)."""
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) summed over dimensions; z broadcasts as (..., N, D)."""
        raise NotImplementedError


class GaussianPosterior(Posterior):
    """Factored Gaussian N(mean, diag(exp(logvar)))."""

    def __init__(self, mean: Tensor, logvar: Tensor):
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def rsample_n(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn((k, *self.mean.shape), generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        # The standardised distance (z - mean) * exp(-logvar / 2) stays finite where
        # exp(logvar) underflows in float32 (logvar < -87; VIMAE's encoder reaches -150).
        scaled = (z - self.mean) * torch.exp(-0.5 * self.logvar)
        return -0.5 * (LOG_2PI + self.logvar + scaled ** 2).sum(-1)

    def kl_to_standard_normal(self) -> Tensor:
        """Analytic KL(q(z|x) || N(0, I)) per row."""
        return 0.5 * (torch.exp(self.logvar) + self.mean ** 2 - 1.0 - self.logvar).sum(-1)


class DeterministicPosterior(Posterior):
    """A point mass at ``mean`` (deterministic encoders, e.g. WAE-style)."""

    def __init__(self, mean: Tensor):
        self.mean = mean

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        return self.mean

    def rsample_n(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        return self.mean.unsqueeze(0).expand(k, *self.mean.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        raise ValueError(
            "a deterministic encoder has no density q(z|x); use a Gaussian encoder "
            "(posterior: gaussian) for NLL, KL and mutual information")
