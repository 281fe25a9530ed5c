"""The Gaussian posterior's density stays finite where exp(logvar) underflows."""

from __future__ import annotations

import math

import torch

from benchbed.distributions import GaussianPosterior
from benchbed_plugins.metrics.latent_metrics import mutual_info_minibatch


def test_log_prob_at_logvar_minus_150_is_finite_and_exact():
    mean = torch.zeros(1, 2)  # at 0 a step of exp(-75) is representable in float32
    logvar = torch.full((1, 2), -150.0)  # exp(-150) underflows to 0 in float32
    assert torch.exp(logvar).eq(0).all()
    q = GaussianPosterior(mean, logvar)
    eps = torch.tensor([[0.3, -2.0]])
    z = mean + torch.exp(torch.tensor(-75.0)) * eps  # one standard deviation away, times eps
    # log N(z; m, s^2) = -1/2 log 2 pi - log s - eps^2 / 2, with log s = -75, per dimension
    expected = sum(-0.5 * math.log(2 * math.pi) + 75.0 - 0.5 * e * e for e in eps[0].tolist())
    got = q.log_prob(z)
    assert torch.isfinite(got).all()
    assert abs(got.item() - expected) < 1e-3 * abs(expected)


def test_a_code_far_from_a_sharp_posterior_has_a_very_low_not_nan_density():
    q = GaussianPosterior(torch.zeros(1, 2), torch.full((1, 2), -150.0))
    got = q.log_prob(torch.ones(1, 2))
    assert not torch.isnan(got).any() and got.item() < -1e30


def test_mutual_information_of_sharp_posteriors_is_not_nan():
    # Distinct codes with tiny variance: each z_i identifies x_i, so the estimate is at log M.
    m = 50
    means = torch.randn(m, 2, generator=torch.Generator().manual_seed(0))
    q = GaussianPosterior(means, torch.full((m, 2), -150.0))
    mi = mutual_info_minibatch([q], [q.mean])
    assert math.isfinite(mi) and abs(mi - math.log(m)) < 1e-4
