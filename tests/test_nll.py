"""Importance-sampled NLL against the closed-form marginal of a linear-Gaussian model.

Model: z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_4) with orthogonal columns in W,
so p(x) = N(b, W W^T + s^2 I) and the true posterior is a diagonal Gaussian.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchbed import testing
from benchbed.plugin_api.components import Decoder, Encoder
from benchbed.distributions import DeterministicPosterior, GaussianPosterior, Posterior
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics import nll as nll_plugin

S = 0.5  # decoder noise std
LATENT = 2


class LinearGaussianDecoder(Decoder):
    def __init__(self, w, b):
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(b)

    def mean(self, z):
        return (z @ self.w.T + self.b).view(-1, 1, 2, 2)

    def log_prob(self, x, z):
        diff = x.reshape(x.shape[0], -1) - (z @ self.w.T + self.b)
        return -0.5 * (diff ** 2 / S ** 2 + math.log(2 * math.pi * S ** 2)).sum(-1)


class LinearGaussianEncoder(Encoder):
    """The exact posterior, optionally shifted and widened (an imperfect proposal)."""

    def __init__(self, w, b, shift=0.0, widen=1.0):
        super().__init__()
        self.latent_dim = LATENT
        self.w, self.b, self.shift, self.widen = w, b, shift, widen
        col_sq = (w ** 2).sum(0)
        self.post_var = 1.0 / (1.0 + col_sq / S ** 2)  # diagonal because W^T W is

    def forward(self, x):
        mean = ((x.reshape(x.shape[0], -1) - self.b) @ self.w) * self.post_var / S ** 2
        logvar = torch.log(self.post_var * self.widen).expand_as(mean)
        return GaussianPosterior(mean + self.shift, logvar)


class PointEncoder(LinearGaussianEncoder):
    def forward(self, x):
        return DeterministicPosterior(super().forward(x).mean)


def linear_gaussian(seed=0, n=200):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
    w = q[:, :LATENT] * torch.tensor([2.0, 1.0])
    b = torch.randn(4, generator=g)
    z = torch.randn(n, LATENT, generator=g)
    x = (z @ w.T + b + S * torch.randn(n, 4, generator=g)).view(n, 1, 2, 2)
    return w, b, x


def closed_form_nll(w, b, x):
    """-log N(x; b, W W^T + s^2 I), computed in float64 by torch.distributions."""
    cov = (w @ w.T + S ** 2 * torch.eye(4)).double()
    dist = torch.distributions.MultivariateNormal(b.double(), covariance_matrix=cov)
    return -dist.log_prob(x.reshape(x.shape[0], -1).double())


def context(encoder, w, b, x, tmp_path, seed=0):
    model = testing.model(encoder, LinearGaussianDecoder(w.clone(), b.clone()))
    return testing.eval_context(model, testing.split(x, torch.zeros(len(x))), run_dir=tmp_path, seed=seed)


def test_nll_is_registered_by_the_plugin_hook():
    seen = {}
    nll_plugin.register_metrics(lambda name, cls: seen.setdefault(name, cls))
    assert seen == {"nll": nll_plugin.ImportanceSampledNLL, "nll_defensive": nll_plugin.DefensiveNLL}


def test_exact_posterior_proposal_gives_the_exact_nll_for_any_k(tmp_path):
    w, b, x = linear_gaussian()
    truth = closed_form_nll(w, b, x)
    for k in (1, 7):
        ctx = context(LinearGaussianEncoder(w, b), w, b, x, tmp_path)
        values = nll_plugin.ImportanceSampledNLL(k=k, batch_size=64, max_rows=50).evaluate(ctx).values
        assert values["nll"] == pytest.approx(float(truth.mean()), abs=1e-4)
        # every point is exact, so the spread is the spread of the true per-point NLLs
        assert values["nll_se"] == pytest.approx(float(truth.std() / math.sqrt(len(x))), rel=1e-3)
        assert values["k"] == k and values["n"] == len(x)


def test_imperfect_proposal_converges_to_closed_form_within_005_nats_at_k5000(tmp_path):
    w, b, x = linear_gaussian()
    truth = float(closed_form_nll(w, b, x).mean())
    encoder = LinearGaussianEncoder(w, b, shift=0.4, widen=1.8)
    errors = {}
    for k in (10, 5000):
        ctx = context(encoder, w, b, x, tmp_path)
        errors[k] = nll_plugin.ImportanceSampledNLL(k=k).evaluate(ctx).values["nll"] - truth
    assert abs(errors[5000]) < 0.05
    # the IWAE bound: with few samples the NLL is over-estimated, and more samples help
    assert errors[10] > 0.1
    assert abs(errors[5000]) < abs(errors[10]) / 3


def test_k_chunking_and_batching_do_not_change_the_estimate_beyond_noise(tmp_path):
    w, b, x = linear_gaussian(seed=1, n=60)
    encoder = LinearGaussianEncoder(w, b, shift=0.2, widen=1.5)
    truth = float(closed_form_nll(w, b, x).mean())
    one_chunk = nll_plugin.ImportanceSampledNLL(k=2000, batch_size=60, max_rows=10**6)
    many_chunks = nll_plugin.ImportanceSampledNLL(k=2000, batch_size=7, max_rows=333)
    for metric in (one_chunk, many_chunks):
        value = metric.evaluate(context(encoder, w, b, x, tmp_path)).values["nll"]
        assert abs(value - truth) < 0.05


def test_test_subset_draws_that_many_points_reproducibly(tmp_path):
    w, b, x = linear_gaussian(n=100)
    metric = nll_plugin.ImportanceSampledNLL(k=3, test_subset=25)
    first = metric.evaluate(context(LinearGaussianEncoder(w, b), w, b, x, tmp_path, seed=3)).values
    again = metric.evaluate(context(LinearGaussianEncoder(w, b), w, b, x, tmp_path, seed=3)).values
    assert first["n"] == 25 and first == again
    # the exact proposal makes the value the closed form on *some* 25 of the 100 points
    per_point = closed_form_nll(w, b, x)
    assert per_point.min() < first["nll"] < per_point.max()
    assert first["nll"] != pytest.approx(float(per_point.mean()), abs=1e-3)


def test_deterministic_encoder_is_refused_with_a_clear_error(tmp_path):
    w, b, x = linear_gaussian(n=10)
    with pytest.raises(BenchbedError, match="needs the density q\\(z\\|x\\)"):
        nll_plugin.ImportanceSampledNLL(k=5).evaluate(context(PointEncoder(w, b), w, b, x, tmp_path))


def test_evaluation_restores_training_mode(tmp_path):
    w, b, x = linear_gaussian(n=10)
    ctx = context(LinearGaussianEncoder(w, b), w, b, x, tmp_path)
    ctx.model.train()
    nll_plugin.ImportanceSampledNLL(k=2).evaluate(ctx)
    assert ctx.model.training


def test_a_too_narrow_posterior_overstates_the_nll_and_the_defensive_mixture_recovers_it(tmp_path):
    # q(z|x) a hundred times narrower than the true posterior, as an MMD-VAE's encoder becomes:
    # the posterior-proposal estimate is far above the truth; the mixture of widened posteriors
    # (one of them about the true width) comes within a few tenths of a nat at K = 4000.
    w, b, x = linear_gaussian()
    truth = float(closed_form_nll(w, b, x).mean())
    encoder = LinearGaussianEncoder(w, b, widen=1e-4)
    plain = nll_plugin.ImportanceSampledNLL(k=4000).evaluate(context(encoder, w, b, x, tmp_path)).values
    mixed = nll_plugin.DefensiveNLL(k=4000, widths=[0.0, 0.1, 0.3, 1.0]).evaluate(
        context(encoder, w, b, x, tmp_path)).values
    assert plain["nll"] - truth > 5.0
    assert abs(mixed["nll"] - truth) < 0.3


def test_with_the_exact_posterior_the_mixture_costs_little(tmp_path):
    w, b, x = linear_gaussian()
    truth = float(closed_form_nll(w, b, x).mean())
    mixed = nll_plugin.DefensiveNLL(k=400).evaluate(context(LinearGaussianEncoder(w, b), w, b, x, tmp_path))
    assert 0.0 <= mixed.values["nll"] - truth < 0.1  # never below the truth by more than noise, and close


def test_the_mixture_with_no_widening_is_the_posterior_proposal(tmp_path):
    w, b, x = linear_gaussian()
    encoder = LinearGaussianEncoder(w, b, shift=0.4, widen=1.8)
    plain = nll_plugin.ImportanceSampledNLL(k=64).evaluate(context(encoder, w, b, x, tmp_path)).values
    mixed = nll_plugin.DefensiveNLL(k=64, widths=[0.0]).evaluate(context(encoder, w, b, x, tmp_path)).values
    assert mixed["nll"] == pytest.approx(plain["nll"], abs=1e-5)


def test_the_mixture_refuses_a_posterior_it_cannot_widen_with_a_clear_error(tmp_path):
    class StudentPosterior(Posterior):  # a third party's density, not a Gaussian
        def __init__(self, mean):
            self.mean = mean

        def log_prob(self, z):
            return torch.zeros(z.shape[:-1])

    class StudentEncoder(LinearGaussianEncoder):
        def forward(self, x):
            return StudentPosterior(super().forward(x).mean)

    w, b, x = linear_gaussian(n=20)
    with pytest.raises(BenchbedError, match="widens a Gaussian q\\(z\\|x\\).*StudentPosterior.*use 'nll'"):
        nll_plugin.DefensiveNLL(k=8).evaluate(context(StudentEncoder(w, b), w, b, x, tmp_path))
    with pytest.raises(BenchbedError, match="deterministic"):
        nll_plugin.DefensiveNLL(k=8).evaluate(context(PointEncoder(w, b), w, b, x, tmp_path))
