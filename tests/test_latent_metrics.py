"""Full-data MMD, log det of the code covariance and the minibatch mutual-information
estimator (InfoVAE section 4.2.1 and Appendix B.2), against naive loops, numpy and
closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from benchbed import testing
from benchbed.distributions import GaussianPosterior
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics import latent_metrics as lm


# ------------------------------------------------------------------ helpers


def linear_gaussian_codes(dim, a, s):
    """q(z|x) = N(a x, s^2 I) on the flattened input."""
    return testing.FlatEncoder(dim, logvar=2 * math.log(s), scale=a)


def context(encoder, x, prior=None, seed=0, tmp_path="."):
    model = testing.model(encoder, prior=prior)
    return testing.eval_context(model, testing.split(x, torch.zeros(len(x))), seed=seed, run_dir=tmp_path)


def as_images(z):
    return z.reshape(z.shape[0], 1, 1, z.shape[1])


# ------------------------------------------------------------------ naive MMD


def naive_kernel(kind, dim, scale):
    c = 2.0 * dim * scale
    if kind == "rbf":
        return lambda u, v: math.exp(-sum((a - b) ** 2 for a, b in zip(u, v)) / c)
    return lambda u, v: c / (c + sum((a - b) ** 2 for a, b in zip(u, v)))


def naive_mmd(x, y, k, unbiased):
    """The U/V-statistic written as plain double loops over Python lists."""
    x, y = x.tolist(), y.tolist()
    n, m = len(x), len(y)
    if unbiased:
        xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    else:
        xx = sum(k(a, b) for a in x for b in x) / n ** 2
        yy = sum(k(a, b) for a in y for b in y) / m ** 2
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("kind,unbiased", list(itertools.product(["rbf", "imq"], [True, False])))
def test_blockwise_mmd_equals_naive_double_loop_even_when_blocks_do_not_divide_n(kind, unbiased):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(23, 3, generator=g, dtype=torch.float64) * 1.5 + 0.3
    y = torch.randn(17, 3, generator=g, dtype=torch.float64)
    want = naive_mmd(x, y, naive_kernel(kind, 3, 0.7), unbiased)
    for block in (1, 4, 5, 16, 17, 100):
        got = lm.blockwise_mmd(x, y, lm.evaluation_kernel(kind, 3, 0.7), block, unbiased)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), block


def test_metric_mmd_compares_every_test_code_with_as_many_prior_samples(tmp_path):
    g = torch.Generator().manual_seed(2)
    codes = torch.randn(30, 2, generator=g) + 0.5
    prior_draws = torch.randn(30, 2, generator=g)
    ctx = context(testing.FlatEncoder(2), as_images(codes), testing.FixedSamplesPrior(prior_draws), tmp_path=tmp_path)
    for kind, estimator in itertools.product(["rbf", "imq"], ["unbiased", "biased"]):
        metric = lm.FullDataMMD(kernel=kind, estimator=estimator, block_size=7, batch_size=8)
        values = metric.evaluate(ctx).values
        want = naive_mmd(codes, prior_draws, naive_kernel(kind, 2, 1.0), estimator == "unbiased")
        assert values["mmd"] == pytest.approx(want, rel=1e-5, abs=1e-7)
        assert values["n"] == 30
        # the probe on a batch is the same statistic
        assert metric.probe(ctx.model, as_images(codes))["mmd"] == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_unbiased_full_data_mmd_is_near_zero_when_q_equals_p_and_grows_with_mismatch(tmp_path):
    g = torch.Generator().manual_seed(3)
    matched = torch.randn(3000, 4, generator=g)
    metric = lm.FullDataMMD(block_size=1000)
    near = metric.evaluate(context(testing.FlatEncoder(4), as_images(matched), tmp_path=tmp_path)).values["mmd"]
    shifted = metric.evaluate(context(testing.FlatEncoder(4), as_images(matched + 0.5), tmp_path=tmp_path)).values["mmd"]
    squeezed = metric.evaluate(context(testing.FlatEncoder(4), as_images(0.5 * matched), tmp_path=tmp_path)).values["mmd"]
    assert abs(near) < 2e-3
    assert shifted > 20 * max(abs(near), 1e-4) and squeezed > 20 * max(abs(near), 1e-4)


def test_sampled_codes_follow_the_aggregate_posterior_but_means_do_not(tmp_path):
    # q(z|x) = N(0, I) for every x: q(z) is exactly the prior, the means all sit at 0
    x = torch.zeros(2000, 1, 1, 3)
    ctx = context(linear_gaussian_codes(3, a=0.0, s=1.0), x, tmp_path=tmp_path)
    sampled = lm.FullDataMMD(codes="sample").evaluate(ctx).values["mmd"]
    means = lm.FullDataMMD(codes="mean").evaluate(ctx).values["mmd"]
    assert abs(sampled) < 3e-3
    assert means > 0.1


def test_mmd_test_subset_uses_that_many_codes_reproducibly(tmp_path):
    x = as_images(torch.randn(500, 2, generator=torch.Generator().manual_seed(4)))
    metric = lm.FullDataMMD(test_subset=64)
    first = metric.evaluate(context(testing.FlatEncoder(2), x, seed=5, tmp_path=tmp_path)).values
    again = metric.evaluate(context(testing.FlatEncoder(2), x, seed=5, tmp_path=tmp_path)).values
    other = metric.evaluate(context(testing.FlatEncoder(2), x, seed=6, tmp_path=tmp_path)).values
    assert first["n"] == 64 and first == again and other != first


# -------------------------------------------------------------------- log det


def test_logdet_cov_matches_numpy_on_the_same_codes(tmp_path):
    g = torch.Generator().manual_seed(5)
    codes = torch.randn(400, 3, generator=g, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.1, -0.3, 0.4]], dtype=torch.float64)
    ctx = context(testing.FlatEncoder(3), as_images(codes), tmp_path=tmp_path)
    got = lm.LogDetCovariance(batch_size=64).evaluate(ctx).values
    sign, logdet = np.linalg.slogdet(np.cov(codes.numpy(), rowvar=False, ddof=1))
    assert sign > 0
    assert got["logdet_cov"] == pytest.approx(logdet / 3, rel=1e-9)
    assert got["n"] == 400


def test_logdet_cov_recovers_log_det_a_at_for_z_equal_a_eps(tmp_path):
    a = np.array([[1.5, 0.0], [0.8, 0.6]])
    eps = torch.randn(40_000, 2, generator=torch.Generator().manual_seed(6))
    codes = eps @ torch.tensor(a.T, dtype=torch.float32)
    got = lm.LogDetCovariance().evaluate(context(testing.FlatEncoder(2), as_images(codes), tmp_path=tmp_path))
    want = np.linalg.slogdet(a @ a.T)[1] / 2
    assert got.values["logdet_cov"] == pytest.approx(want, abs=0.02)


def test_logdet_cov_of_sampled_codes_adds_the_posterior_variance(tmp_path):
    # z = a x + s eps with x ~ N(0, I): Cov q(z) = (a^2 + s^2) I, Cov of the means = a^2 I
    x = as_images(torch.randn(40_000, 2, generator=torch.Generator().manual_seed(7)))
    ctx = context(linear_gaussian_codes(2, a=0.6, s=0.8), x, tmp_path=tmp_path)
    sampled = lm.LogDetCovariance(codes="sample").evaluate(ctx).values["logdet_cov"]
    means = lm.LogDetCovariance(codes="mean").evaluate(ctx).values["logdet_cov"]
    assert sampled == pytest.approx(math.log(0.6 ** 2 + 0.8 ** 2), abs=0.02)
    assert means == pytest.approx(math.log(0.6 ** 2), abs=0.02)


def test_logdet_cov_is_minus_infinity_for_codes_on_a_line(tmp_path):
    t = torch.randn(100, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    codes = torch.cat([t, 2 * t], dim=1)
    got = lm.LogDetCovariance().evaluate(context(testing.FlatEncoder(2), as_images(codes), tmp_path=tmp_path))
    assert got.values["logdet_cov"] == float("-inf") or got.values["logdet_cov"] < -10


# -------------------------------------------------------- mutual information


def gaussian_channel_mi(a, s, dims):
    """x ~ N(0, I), z | x ~ N(a x, s^2 I): I(x; z) = dims/2 log(1 + a^2 / s^2)."""
    return 0.5 * dims * math.log(1 + a ** 2 / s ** 2)


@pytest.mark.parametrize("dims,a,s", [(1, 1.0, 0.5), (3, 1.0, 1.0)])
def test_minibatch_mi_estimate_is_close_to_the_gaussian_closed_form(dims, a, s, tmp_path):
    x = as_images(torch.randn(4000, dims, generator=torch.Generator().manual_seed(9)))
    ctx = context(linear_gaussian_codes(dims, a, s), x, tmp_path=tmp_path)
    values = lm.MutualInformation(m=2000, repeats=4).evaluate(ctx).values
    truth = gaussian_channel_mi(a, s, dims)
    assert values["log_m"] == pytest.approx(math.log(2000))
    assert truth < values["log_m"] - 5  # the ceiling is far away
    assert values["mutual_info"] == pytest.approx(truth, abs=0.05)
    assert 0 < values["mutual_info_se"] < 0.05


def test_mi_estimate_never_exceeds_log_m_and_saturates_there_for_huge_information(tmp_path):
    x = as_images(torch.randn(300, 2, generator=torch.Generator().manual_seed(10)))
    ctx = context(linear_gaussian_codes(2, a=1.0, s=1e-3), x, tmp_path=tmp_path)
    values = lm.MutualInformation(m=256, repeats=3, batch_size=100).evaluate(ctx).values
    assert gaussian_channel_mi(1.0, 1e-3, 2) > 13  # the truth is far above the ceiling
    assert values["mutual_info"] <= math.log(256) + 1e-9
    assert values["mutual_info"] > math.log(256) - 0.05


def test_mi_row_blocks_give_the_same_estimate_as_one_block(tmp_path):
    # same points and samples, split differently: the double sum must not change
    g = torch.Generator().manual_seed(11)
    mean, logvar = torch.randn(50, 2, generator=g), 0.3 * torch.randn(50, 2, generator=g)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(50, 2, generator=g)
    whole = lm.mutual_info_minibatch([GaussianPosterior(mean, logvar)], [z])
    parts = [slice(0, 13), slice(13, 40), slice(40, 50)]
    split = lm.mutual_info_minibatch([GaussianPosterior(mean[p], logvar[p]) for p in parts],
                                     [z[p] for p in parts])
    # and the formula by hand: log N(z_i; mu_j, diag(var_j)) from scipy-free numpy
    var = np.exp(logvar.double().numpy())
    zz, mu = z.double().numpy(), mean.double().numpy()
    log_q = -0.5 * (np.log(2 * np.pi * var)[None] + (zz[:, None] - mu[None]) ** 2 / var[None]).sum(-1)
    by_hand = np.mean(np.diag(log_q) - (np.log(np.exp(log_q).sum(1)) - np.log(50)))
    assert whole == pytest.approx(by_hand, abs=1e-4)
    assert split == pytest.approx(whole, abs=1e-5)


def test_mi_probe_uses_the_batch_as_the_m_points():
    x = as_images(torch.randn(2000, 1, generator=torch.Generator().manual_seed(12)))
    encoder = linear_gaussian_codes(1, a=1.0, s=0.5)
    model = testing.model(encoder)
    model.train()
    out = lm.MutualInformation().probe(model, x)
    assert out["log_m"] == pytest.approx(math.log(2000))
    assert out["mutual_info"] == pytest.approx(gaussian_channel_mi(1.0, 0.5, 1), abs=0.1)
    assert model.training  # the probe leaves the trainer's mode alone


def test_logdet_probe_is_the_log_det_of_the_batch_codes_covariance_per_dim():
    # q(z|x) = N(a*x, s^2) with x ~ N(0, 1): the codes' variance is a^2 + s^2 in every dimension
    x = as_images(torch.randn(4000, 3, generator=torch.Generator().manual_seed(13)))
    model = testing.model(linear_gaussian_codes(3, a=1.5, s=0.5))
    model.train()
    got = lm.LogDetCovariance().probe(model, x)["logdet_cov"]
    assert got == pytest.approx(math.log(1.5 ** 2 + 0.5 ** 2), abs=0.06)
    assert model.training


def test_mi_needs_a_density_and_says_so_for_deterministic_encoders(tmp_path):
    ctx = context(testing.FlatEncoder(2), as_images(torch.randn(20, 2)), tmp_path=tmp_path)
    with pytest.raises(BenchbedError, match="deterministic"):
        lm.MutualInformation(m=10, repeats=1).evaluate(ctx)


def test_latent_metrics_are_registered_and_the_curve_ones_are_trackable():
    seen = {}
    lm.register_metrics(lambda name, cls: seen.setdefault(name, cls))
    assert seen == {"mmd": lm.FullDataMMD, "logdet_cov": lm.LogDetCovariance,
                    "mutual_info": lm.MutualInformation}
    assert lm.FullDataMMD.trackable and lm.MutualInformation.trackable


@pytest.mark.parametrize("shift", [0.0, 0.6])
def test_mmd_standard_error_matches_the_spread_of_independent_estimates(shift):
    # The predicted standard error against the sample std of 300 independent MMD^2 estimates,
    # with q = p (where the estimate is pure noise) and with q != p.
    n, dim, reps = 150, 2, 300
    gen = torch.Generator().manual_seed(0)
    kernel = lm.evaluation_kernel("rbf", dim, 1.0)
    estimates, predicted = [], []
    for _ in range(reps):
        x = torch.randn(n, dim, generator=gen) + shift
        y = torch.randn(n, dim, generator=gen)
        estimates.append(lm.blockwise_mmd(x, y, kernel, block_size=64))
        predicted.append(lm.mmd_standard_error(x, y, kernel, block_size=64))
    spread = float(np.std(estimates, ddof=1))
    ratio = float(np.mean(predicted)) / spread
    # With q = p the error is that of the paired U-statistic, a little above the spread of our
    # estimator (whose cross term averages all n^2 pairs): conservative, so a floor never hides.
    low, high = (1.0, 1.5) if shift == 0.0 else (0.8, 1.25)
    assert low < ratio < high, (ratio, spread)
