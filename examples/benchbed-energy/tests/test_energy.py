"""Tests of the energy divergence, written with benchbed.testing (run: pytest tests/).

Each test compares the plugin with something that does not share its code:
a double loop over pairs, and the objective's loss formula.
"""

import math

import pytest
import torch

from benchbed import testing
from benchbed_energy import EnergyDistance


def naive_energy(x, y):
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (unbiased: pairs of distinct rows), by loops."""
    def dist(a, b):
        return math.dist(a.tolist(), b.tolist())

    def within(s):
        n = len(s)
        return sum(dist(s[i], s[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))

    between = sum(dist(a, b) for a in x for b in y) / (len(x) * len(y))
    return 2 * between - within(x) - within(y)


def test_the_divergence_equals_a_double_loop_over_codes_and_prior_samples():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20, 3, generator=gen, dtype=torch.float64) + 0.5
    z0 = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    prior = testing.FixedSamplesPrior(z0)  # hands the divergence these "prior samples"
    value = EnergyDistance()(testing.point_codes(z, prior))
    assert prior.asked == [(20, 3)]
    assert float(value) == pytest.approx(naive_energy(z, z0), rel=1e-10)


def test_infovae_trains_with_it_and_logs_it_under_its_term_name():
    model = testing.tiny_model(shape=(1, 8, 8), latent_dim=2)
    objective = testing.objective("infovae", divergence="energy", alpha=1.0, **{"lambda": 10.0})
    x = (torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    loss = objective.loss(model, x)
    loss.total.backward()
    # alpha = 1: no KL term, and the divergence weighs alpha + lambda - 1 = 10
    assert float(loss.total.detach()) == pytest.approx(-loss.terms["rec"] + 10 * loss.terms["energy"], rel=1e-5)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_methods_named_after_the_mmd_refuse_it():
    vimae = testing.objective("vimae")
    assert vimae.divergence_refusal("energy") == "takes only the divergence 'mmd', not 'energy'"
    assert testing.objective("infovae").divergence_refusal("energy") is None
