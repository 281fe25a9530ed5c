"""beta-TCVAE and FactorVAE against independent math.

Codes from a Gaussian channel z = mu + s eps with mu ~ N(0, Sigma) have an
aggregate posterior q(z) = N(0, Sigma + s^2 I), so its total correlation,
index-code MI and dimension-wise KL to N(0, I) have closed forms; the
minibatch-weighted-sampling estimates must approach them, and a FactorVAE
discriminator trained through the adversary interface must learn a mean
logit equal to the TC.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchbed.components import Codes
from benchbed.distributions import GaussianPosterior
from benchbed_plugins.btcvae import BetaTCVAE, minibatch_weighted_terms
from benchbed_plugins.factorvae import FactorVAE, permute_dims
from benchbed_plugins.divergences.kl import per_example_kl
from benchbed_plugins.priors import NormalPrior

RHO, S = 0.8, 0.5


def gaussian_channel(m: int, seed: int = 0, rho: float = RHO) -> Codes:
    g = torch.Generator().manual_seed(seed)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    mean = torch.randn(m, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    logvar = torch.full_like(mean, math.log(S ** 2))
    posterior = GaussianPosterior(mean, logvar)
    z = mean + S * torch.randn(m, 2, generator=g, dtype=torch.float64)
    return Codes(x=mean, posterior=posterior, z=z, prior=NormalPrior())


def closed_forms() -> dict[str, float]:
    """TC, MI and dimension-wise KL of the channel above, in nats."""
    marginal_var = 1 + S ** 2
    rho = RHO / marginal_var
    return {"tc": -0.5 * math.log(1 - rho ** 2),
            "mi": 0.5 * math.log(np.linalg.det(np.eye(2) + np.array([[1, RHO], [RHO, 1]]) / S ** 2)),
            "dim_kl": 2 * 0.5 * (marginal_var - 1 - math.log(marginal_var))}


def test_minibatch_weighted_sampling_recovers_the_closed_forms():
    codes = gaussian_channel(4000)
    terms = minibatch_weighted_terms(codes)
    truth = closed_forms()
    assert float(terms.total_correlation) == pytest.approx(truth["tc"], abs=0.03)
    assert float(terms.mutual_info) == pytest.approx(truth["mi"], abs=0.05)
    assert float(terms.dimwise_kl) == pytest.approx(truth["dim_kl"], abs=0.03)


def test_independent_dimensions_have_no_total_correlation():
    codes = gaussian_channel(4000, rho=0.0)
    assert abs(float(minibatch_weighted_terms(codes).total_correlation)) < 0.02


def test_the_decomposition_adds_up_to_the_one_sample_kl():
    codes = gaussian_channel(300)
    terms = minibatch_weighted_terms(codes, dataset_size=10_000)
    one_sample = (codes.posterior.log_prob(codes.z) - codes.prior.log_prob(codes.z)).mean()
    total = terms.mutual_info + terms.total_correlation + terms.dimwise_kl
    assert float(total) == pytest.approx(float(one_sample), rel=1e-10)


def test_dataset_size_shifts_values_but_not_gradients():
    grads = []
    for n in (None, 737_280):
        codes = gaussian_channel(64)
        codes.z.requires_grad_(True)
        terms = minibatch_weighted_terms(codes, n)
        (terms.mutual_info + 6 * terms.total_correlation + terms.dimwise_kl).backward()
        grads.append(codes.z.grad.clone())
    assert torch.allclose(grads[0], grads[1])


class _TinyModel(torch.nn.Module):
    """Identity 'autoencoder' on 2-D data: enough for the objective's plumbing."""

    def __init__(self):
        super().__init__()
        self.prior = NormalPrior()
        self.mean = torch.nn.Linear(2, 2)
        self.logvar = torch.nn.Linear(2, 2)

    def codes(self, x):
        posterior = GaussianPosterior(self.mean(x), self.logvar(x))
        return Codes(x=x, posterior=posterior, z=posterior.rsample(), prior=self.prior)

    class decoder:  # noqa: N801 - a stand-in with log p(x|z) = -||x - z||^2
        @staticmethod
        def log_prob(x, z):
            return -((x - z) ** 2).sum(1)


def test_btcvae_with_unit_weights_is_the_elbo_with_a_one_sample_kl():
    torch.manual_seed(0)
    model, x = _TinyModel(), torch.randn(32, 2)
    objective = BetaTCVAE(alpha=1, beta=1, gamma=1, dataset_size=1000)
    objective.bind(None, 2)
    torch.manual_seed(1)
    loss = objective.loss(model, x)
    torch.manual_seed(1)
    codes = model.codes(x)
    elbo = (-model.decoder.log_prob(x, codes.z) + codes.posterior.log_prob(codes.z)
            - codes.prior.log_prob(codes.z)).mean()
    assert float(loss.total.detach()) == pytest.approx(float(elbo.detach()), rel=1e-5)
    assert set(loss.terms) >= {"rec", "mi", "tc", "dim_kl", "kl", "loss"}


def test_permute_dims_keeps_every_marginal_and_breaks_the_joint():
    codes = gaussian_channel(5000)
    shuffled = permute_dims(codes.z, torch.Generator().manual_seed(0))
    assert torch.equal(shuffled.sort(0).values, codes.z.sort(0).values)
    assert abs(float(torch.corrcoef(shuffled.T)[0, 1])) < 0.05
    assert float(torch.corrcoef(codes.z.T)[0, 1]) > 0.5


def test_factorvae_discriminator_learns_the_total_correlation():
    torch.manual_seed(0)
    objective = FactorVAE(hidden=[64, 64], lr=1e-3)
    objective.bind(None, 2)
    (adversary,) = objective.adversaries()
    optimiser = torch.optim.Adam(adversary.module.parameters(), lr=adversary.lr, betas=adversary.betas)
    for step in range(1500):
        codes = gaussian_channel(512, seed=step)
        codes.z = codes.z.float()
        optimiser.zero_grad(set_to_none=True)
        adversary.loss(codes).backward()
        optimiser.step()
    estimates = [float(objective.tc_estimate(gaussian_channel(4000, seed=10_000 + i).z.float()))
                 for i in range(5)]
    assert np.mean(estimates) == pytest.approx(closed_forms()["tc"], abs=0.08)


def test_factorvae_loss_leaves_the_discriminator_to_its_own_optimiser():
    torch.manual_seed(0)
    model, x = _TinyModel(), torch.randn(32, 2)
    objective = FactorVAE(hidden=[16], gamma=40)
    objective.bind(None, 2)
    loss = objective.loss(model, x)
    loss.total.backward()
    assert all(p.grad is None for p in objective.discriminator.parameters())
    assert model.mean.weight.grad is not None
    kl = per_example_kl(loss.codes).mean().detach()
    assert float(loss.total.detach()) == pytest.approx(
        -loss.terms["rec"] + float(kl) + 40 * loss.terms["tc"], rel=1e-5)
