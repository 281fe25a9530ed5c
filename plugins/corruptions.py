"""Input corruptions of VIMAE section 5.2 (robustness of learned features).

Both are seeded by the generator they are given. Random numbers are drawn on
the generator's device and then moved to the input's device, so a CPU
generator with one seed corrupts a batch identically on any device.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Corruption, Params


def standard_normal(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def uniform(shape: torch.Size, generator: torch.Generator, like: Tensor) -> Tensor:
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return u.to(device=like.device)


class GaussianNoise(Corruption):
    """Additive Gaussian noise, as VIMAE §5.2 defines it: x' = x + nu.

    nu ~ N(0, sigma^2) independently per element; VIMAE uses sigma in {0.2, 0.4}
    on MNIST. The paper does not clip, so neither do we by default; ``clip``
    gives x' = clip(x + nu, 0, 1), a different (milder) corruption.

    Params: ``sigma`` (noise standard deviation), ``clip`` (clip to [0, 1],
    default false).
    """

    class Params(Params):
        sigma: float = Field(0.2, gt=0, description="standard deviation of the added noise")
        clip: bool = Field(False, description="clip the result to [0, 1] (VIMAE does not)")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        noisy = x + self.params.sigma * standard_normal(x.shape, generator, x)
        return noisy.clamp(0.0, 1.0) if self.params.clip else noisy


class BernoulliMask(Corruption):
    """Bernoulli masking: each element is set to 0 with probability p.

    x' = x * (1 - m),  m ~ Bernoulli(p) independently per element (per pixel
    and channel), or per pixel shared by all channels with ``per_pixel``.
    VIMAE uses p in {0.2, 0.5} on MNIST.

    Params: ``p`` (probability of zeroing), ``per_pixel`` (one draw per
    spatial position, shared across channels; default false).
    """

    class Params(Params):
        p: float = Field(0.2, ge=0, le=1, description="probability that an element is set to 0")
        per_pixel: bool = Field(False, description="mask whole pixels (all channels together) rather than elements")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        shape = x.shape
        if self.params.per_pixel and x.dim() == 4:
            shape = torch.Size((shape[0], 1, shape[2], shape[3]))
        dropped = uniform(shape, generator, x) < self.params.p  # P(u < p) = p for u ~ U[0, 1)
        return x.masked_fill(dropped.expand(x.shape), 0.0)


@hookimpl
def register_corruptions(register):
    register("gaussian_noise", GaussianNoise)
    register("bernoulli_mask", BernoulliMask)
