"""Priors p(z): samples, densities and scores against closed forms, scipy and autograd."""

import math

import pytest
import torch
from scipy import stats

from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.priors import LogisticPrior, NormalPrior

LOGISTIC_SCALE = math.sqrt(3.0) / math.pi  # unit variance: pi^2 s^2 / 3 = 1


def test_priors_are_registered_by_name():
    registry = load_registry()
    assert registry.get("prior", "normal").cls is NormalPrior
    assert registry.get("prior", "logistic").cls is LogisticPrior


@pytest.mark.parametrize("prior", [NormalPrior(), LogisticPrior()], ids=["normal", "logistic"])
def test_prior_samples_have_zero_mean_and_unit_variance(prior):
    g = torch.Generator().manual_seed(0)
    z = prior.sample(200_000, 3, generator=g).double()
    assert z.shape == (200_000, 3)
    # standard error of the mean is 1/sqrt(2e5) ~ 0.002; of the variance ~0.003 (normal), ~0.005 (logistic)
    assert z.mean(0).abs().max() < 0.01
    assert (z.var(0) - 1.0).abs().max() < 0.03


def test_logistic_prior_samples_follow_the_logistic_cdf():
    z = LogisticPrior().sample(20_000, 1, generator=torch.Generator().manual_seed(1)).squeeze(1)
    result = stats.kstest(z.numpy(), stats.logistic(loc=0.0, scale=LOGISTIC_SCALE).cdf)
    assert result.pvalue > 0.01
    # and not the normal one with the same variance (the test can tell them apart)
    assert stats.kstest(z.numpy(), stats.norm().cdf).pvalue < 0.01


def test_logistic_prior_is_leptokurtic():
    z = LogisticPrior().sample(200_000, 1, generator=torch.Generator().manual_seed(2)).double()
    excess_kurtosis = float(((z - z.mean()) ** 4).mean() / z.var() ** 2 - 3.0)
    assert abs(excess_kurtosis - 1.2) < 0.15  # logistic: 6/5


def test_sampling_is_reproducible_with_a_generator():
    for prior in (NormalPrior(), LogisticPrior()):
        a = prior.sample(5, 4, generator=torch.Generator().manual_seed(3))
        b = prior.sample(5, 4, generator=torch.Generator().manual_seed(3))
        c = prior.sample(5, 4, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_normal_log_prob_matches_torch_distributions():
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(5)) * 3
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(NormalPrior().log_prob(z), expected)


def test_logistic_log_prob_matches_scipy_including_the_tails():
    z = torch.linspace(-60, 60, 240, dtype=torch.float64).reshape(-1, 3)
    expected = stats.logistic(scale=LOGISTIC_SCALE).logpdf(z.numpy()).sum(-1)
    got = LogisticPrior().log_prob(z)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.from_numpy(expected))


@pytest.mark.parametrize("prior", [NormalPrior(), LogisticPrior()], ids=["normal", "logistic"])
def test_score_is_the_gradient_of_log_prob(prior):
    z = (torch.randn(40, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 4)
    z.requires_grad_(True)
    (autograd_score,) = torch.autograd.grad(prior.log_prob(z).sum(), z)
    torch.testing.assert_close(prior.score(z.detach()), autograd_score)


def test_logistic_density_integrates_to_one():
    grid = torch.linspace(-40, 40, 400_001, dtype=torch.float64).unsqueeze(1)
    density = LogisticPrior().log_prob(grid).exp()
    assert abs(float(torch.trapezoid(density, grid.squeeze(1))) - 1.0) < 1e-6
