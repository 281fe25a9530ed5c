"""Corruptions of VIMAE section 5.2: Gaussian noise and Bernoulli masking.

Checked against their closed-form statistics on inputs where the answer is
known (constant grey images, images without zeros).
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.corruptions import BernoulliMask, GaussianNoise


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_corruptions_are_registered_by_the_builtin_plugins():
    registry = load_registry(autoload=False)
    assert registry.get("corruption", "gaussian_noise").cls is GaussianNoise
    assert registry.get("corruption", "bernoulli_mask").cls is BernoulliMask
    noise = registry.create("corruption", {"name": "gaussian_noise", "sigma": 0.4})
    assert noise.params.sigma == 0.4


def test_gaussian_noise_on_grey_images_has_mean_half_and_std_sigma():
    sigma = 0.1  # 0.5 is 5 sigma from either bound, so clipping (p ~ 3e-7) does not bite
    x = torch.full((400, 1, 28, 28), 0.5)
    y = GaussianNoise(sigma=sigma)(x, seeded())
    n = y.numel()
    assert abs(y.mean().item() - 0.5) < 5 * sigma / math.sqrt(n)
    # sample std of n normals: standard error sigma / sqrt(2n)
    assert abs(y.std().item() - sigma) < 5 * sigma / math.sqrt(2 * n)
    # independent per element: neighbouring noises are uncorrelated
    d = (y - 0.5).flatten()
    corr = (d[1:] * d[:-1]).mean().item() / sigma**2
    assert abs(corr) < 5 / math.sqrt(n)


def test_clipped_gaussian_noise_stays_in_the_unit_interval():
    sigma = 0.4
    x = torch.zeros(200, 1, 28, 28)
    x[100:] = 1.0
    y = GaussianNoise(sigma=sigma, clip=True)(x, seeded(1))
    assert y.min().item() >= 0.0 and y.max().item() <= 1.0
    low, high = y[:100], y[100:]
    m = low.numel()
    # clip(0 + nu) is 0 whenever nu < 0: half the time.
    assert abs((low == 0).float().mean().item() - 0.5) < 5 * 0.5 / math.sqrt(m)
    # E[clip(nu, 0, 1)] = E[nu+] - E[(nu - 1)+]
    #                   = sigma phi(0) - (sigma phi(1/sigma) - (1 - Phi(1/sigma)))
    phi = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    tail = 0.5 * math.erfc((1 / sigma) / math.sqrt(2))
    expected = sigma * phi(0) - (sigma * phi(1 / sigma) - tail)
    assert abs(low.mean().item() - expected) < 5 * sigma / math.sqrt(m)
    assert abs((1 - high).mean().item() - expected) < 5 * sigma / math.sqrt(m)  # symmetric at 1


def test_gaussian_noise_is_unclipped_by_default_as_in_vimae():
    x = torch.zeros(50, 1, 28, 28)
    y = GaussianNoise(sigma=0.4)(x, seeded(2))
    assert y.min().item() < -0.5 and abs(y.mean().item()) < 5 * 0.4 / math.sqrt(y.numel())


def test_bernoulli_mask_zeros_a_fraction_p_and_keeps_the_rest():
    p = 0.3
    x = 0.1 + 0.9 * torch.rand(300, 1, 28, 28, generator=seeded(5))  # no zeros to start with
    before = x.clone()
    y = BernoulliMask(p=p)(x, seeded(6))
    zeroed = y == 0
    n = y.numel()
    assert abs(zeroed.float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(y[~zeroed], x[~zeroed])
    assert torch.equal(x, before)  # the input is not modified in place


def test_bernoulli_mask_extremes():
    x = torch.rand(10, 1, 8, 8, generator=seeded(7)) + 0.1
    assert torch.equal(BernoulliMask(p=0.0)(x, seeded()), x)
    assert torch.count_nonzero(BernoulliMask(p=1.0)(x, seeded())) == 0


def test_bernoulli_mask_per_pixel_masks_all_channels_together():
    p = 0.5
    x = torch.ones(200, 3, 16, 16)
    y = BernoulliMask(p=p, per_pixel=True)(x, seeded(8))
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])
    frac = (y[:, 0] == 0).float().mean().item()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / y[:, 0].numel())
    # per element (the default) the channels are masked independently
    z = BernoulliMask(p=p)(x, seeded(8))
    assert not torch.equal(z[:, 0], z[:, 1])


@pytest.mark.parametrize("corruption", [GaussianNoise(sigma=0.2), BernoulliMask(p=0.5)],
                         ids=["gaussian_noise", "bernoulli_mask"])
def test_same_generator_seed_gives_the_same_corruption(corruption):
    x = torch.rand(20, 1, 28, 28, generator=seeded(9))
    a, b = corruption(x, seeded(3)), corruption(x, seeded(3))
    c = corruption(x, seeded(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_params_are_validated():
    with pytest.raises(ValidationError):
        GaussianNoise(sigma=0.0)
    with pytest.raises(ValidationError):
        BernoulliMask(p=1.5)
    with pytest.raises(ValidationError):
        BernoulliMask(prob=0.2)  # unknown keys are errors


class ZeroInPlace(BernoulliMask):
    """A careless plugin: it overwrites its input."""

    def __call__(self, x, generator):
        return x.zero_()


def test_a_corruption_that_writes_in_place_cannot_reach_the_clean_data():
    from benchbed_plugins.metrics.encoding import input_batches

    x = torch.rand(10, 1, 4, 4)
    before = x.clone()
    batches = list(input_batches(x, 4, "cpu", ZeroInPlace(ZeroInPlace.Params()), torch.Generator()))
    assert all((b == 0).all() for b in batches)
    assert torch.equal(x, before)
