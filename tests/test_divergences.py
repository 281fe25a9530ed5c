"""Divergences between q(z) and p(z) against naive loops, closed forms and toy games."""

import math

import pytest
import torch

from benchbed import testing
from benchbed.plugin_api.registry import load_registry
from benchbed_plugins.divergences.adversarial import Adversarial
from benchbed_plugins.divergences.kernels import pairwise_sq_dists
from benchbed_plugins.divergences.kl import KL, per_example_kl
from benchbed_plugins.divergences.mmd import MMD
from benchbed_plugins.priors import LogisticPrior, NormalPrior
from benchbed_plugins.divergences.stein import Stein

WAE_SCALES = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


# ------------------------------------------------------------------ naive MMD


def sq_dist(a, b):
    return sum((float(ai) - float(bi)) ** 2 for ai, bi in zip(a, b))


def naive_kernel(d2, kind, base, scales):
    if kind == "imq":
        return sum(s * base / (s * base + d2) for s in scales)
    return sum(math.exp(-d2 / (s * base)) for s in scales)


def naive_median_bandwidth(x, y):
    """Lower median of the squared distances over all distinct pairs of the pooled points."""
    d = [sq_dist(x[i], x[j]) for i in range(len(x)) for j in range(i + 1, len(x))]
    d += [sq_dist(y[i], y[j]) for i in range(len(y)) for j in range(i + 1, len(y))]
    d += [sq_dist(a, b) for a in x for b in y]
    d.sort()
    return d[(len(d) - 1) // 2]


def naive_mmd(x, y, kind, base, scales, unbiased):
    n, m = len(x), len(y)
    k = lambda a, b: naive_kernel(sq_dist(a, b), kind, base, scales)  # noqa: E731
    if unbiased:
        xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    else:
        xx = sum(k(a, b) for a in x for b in x) / n ** 2
        yy = sum(k(a, b) for a in y for b in y) / m ** 2
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_pairwise_sq_dists_matches_a_double_loop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g,
                                                                             dtype=torch.float64)
    d2 = pairwise_sq_dists(x, y)
    for i in range(5):
        for j in range(4):
            assert abs(float(d2[i, j]) - sq_dist(x[i], y[j])) < 1e-12
    assert (pairwise_sq_dists(x, x) >= 0).all()


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel,bandwidth", [("imq", None), ("rbf", 1.7), ("rbf", "median"),
                                              ("rbf", "dim_squared")])
@pytest.mark.parametrize("scales", [[1.0], WAE_SCALES], ids=["single", "multi"])
def test_mmd_equals_the_naive_double_loop(estimator, kernel, bandwidth, scales):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64) + 0.5
    y = torch.randn(7, 3, generator=g, dtype=torch.float64)
    params = dict(kernel=kernel, estimator=estimator, scales=scales)
    if kernel == "imq":
        params["sigma2"] = 1.3
        base = 2 * 3 * 1.3  # C = 2 dim sigma2
    else:
        params["bandwidth"] = bandwidth
        base = {"median": naive_median_bandwidth(x, y), "dim_squared": 9.0}.get(bandwidth, bandwidth)
    got = MMD(**params).between(x, y)
    expected = naive_mmd(x, y, kernel, base, scales, estimator == "unbiased")
    assert abs(float(got) - expected) < 1e-10


def test_mmd_forward_compares_the_codes_with_as_many_fresh_prior_samples():
    z = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(123)
    got = MMD().forward(testing.point_codes(z, LogisticPrior()))
    torch.manual_seed(123)
    z0 = LogisticPrior().sample(8, 2).double()
    assert abs(float(got) - naive_mmd(z, z0, "imq", 2 * 2, [1.0], unbiased=True)) < 1e-6


def draw_mmds(divergence, shift, draws=200, n=100, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(draws):
        z = torch.randn(n, dim, generator=g) + shift
        z0 = torch.randn(n, dim, generator=g)
        out.append(float(divergence.between(z, z0)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_unbiased_mmd_has_zero_mean_when_q_equals_p(kernel):
    values = draw_mmds(MMD(kernel=kernel), shift=0.0)
    standard_error = values.std() / math.sqrt(len(values))
    assert abs(values.mean()) < 3 * standard_error
    assert (values < 0).any()  # an unbiased estimate of 0 must sometimes be negative


def test_biased_mmd_and_vimae_eq15_as_printed_are_positive_when_q_equals_p():
    # the V-statistic keeps the diagonal k(z, z) = 1 terms: mean ~ 2/n (1 - E k) > 0
    biased = draw_mmds(MMD(estimator="biased"), shift=0.0, draws=50)
    assert biased.mean() > 10 * biased.std() / math.sqrt(len(biased))
    # VIMAE eq. 15 as printed weights the cross term by 1/n^2 instead of 2/n^2
    unbiased = MMD()
    g = torch.Generator().manual_seed(3)
    printed = []
    for _ in range(50):
        z, z0 = torch.randn(100, 4, generator=g), torch.randn(100, 4, generator=g)
        cross = (8 / (8 + pairwise_sq_dists(z, z0))).mean()
        printed.append(float(unbiased.between(z, z0) + cross))  # -2 mean k + 1 mean k
    printed = torch.tensor(printed)
    assert printed.mean() > 0.3  # ~E k(q, p), nowhere near 0


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_unbiased_mmd_is_clearly_positive_under_a_mean_shift_of_one(kernel):
    null = draw_mmds(MMD(kernel=kernel), shift=0.0, draws=50, seed=4)
    shifted = draw_mmds(MMD(kernel=kernel), shift=1.0, draws=20, seed=5)
    assert (shifted > null.max()).all()
    assert shifted.mean() > 10 * null.std()


def test_mmd_is_differentiable_in_the_codes():
    z = torch.randn(10, 3, requires_grad=True)
    MMD(scales=WAE_SCALES)(testing.point_codes(z)).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


# ------------------------------------------------------------------------- KL


def test_analytic_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(6)
    mean = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64)
    codes = testing.gaussian_codes(mean, logvar, "normal", generator=g)
    analytic = per_example_kl(codes)
    torch.testing.assert_close(KL()(codes), analytic.mean())
    # independent Monte Carlo with torch.distributions
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    samples = q.sample((200_000,))
    log_ratio = (q.log_prob(samples) - torch.distributions.Normal(0.0, 1.0).log_prob(samples)).sum(-1)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(samples.shape[0])
    assert ((analytic - mc).abs() < 4 * se + 1e-3).all()


def test_monte_carlo_kl_averages_to_the_analytic_one():
    g = torch.Generator().manual_seed(7)
    mean = torch.randn(1, 2, generator=g, dtype=torch.float64).expand(100_000, 2)
    logvar = torch.randn(1, 2, generator=g, dtype=torch.float64).expand(100_000, 2)
    codes = testing.gaussian_codes(mean, logvar, "normal", generator=g)
    closed = 0.5 * float((logvar.exp() + mean ** 2 - 1 - logvar)[0].sum())
    mc = float(KL(analytic=False)(codes))
    assert abs(mc - closed) < 0.02 * max(closed, 1.0)
    assert abs(float(KL()(codes)) - closed) < 1e-12


def test_kl_to_the_logistic_prior_uses_its_density():
    g = torch.Generator().manual_seed(8)
    n = 50_000
    codes = testing.gaussian_codes(torch.full((n, 1), 0.3, dtype=torch.float64),
                                   torch.full((n, 1), math.log(0.5), dtype=torch.float64), "logistic", generator=g)
    # reference by quadrature: KL = int q log q - q log p with scipy densities
    from scipy import integrate, stats
    q = stats.norm(0.3, math.sqrt(0.5))
    p = stats.logistic(scale=math.sqrt(3) / math.pi)
    reference, _ = integrate.quad(lambda t: q.pdf(t) * (q.logpdf(t) - p.logpdf(t)), -20, 20)
    assert abs(float(KL()(codes)) - reference) < 0.01


# ---------------------------------------------------------------------- Stein


def naive_svgd_phi(z, score, h=None):
    """phi*(z_i) = 1/n sum_j [k(z_j, z_i) score(z_j) + grad_{z_j} k(z_j, z_i)], k = exp(-|a-b|^2/h)."""
    n, d = z.shape
    if h is None:  # median heuristic med^2 / log(n + 1)
        pairs = sorted(sq_dist(z[i], z[j]) for i in range(n) for j in range(i + 1, n))
        h = pairs[(len(pairs) - 1) // 2] / math.log(n + 1)
    phi = torch.zeros(n, d, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            k = math.exp(-sq_dist(z[j], z[i]) / h)
            for c in range(d):
                grad_zj_k = -2.0 / h * (float(z[j, c]) - float(z[i, c])) * k
                phi[i, c] += (k * float(score[j, c]) + grad_zj_k) / n
    return phi


@pytest.mark.parametrize("prior", [NormalPrior(), LogisticPrior()], ids=["normal", "logistic"])
@pytest.mark.parametrize("bandwidth", ["median", 0.8])
def test_stein_surrogate_gradient_is_minus_phi_star_over_n(prior, bandwidth):
    n = 9
    z = (torch.randn(n, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64) + 1.0)
    z.requires_grad_(True)
    Stein(bandwidth=bandwidth)(testing.point_codes(z, prior)).backward()
    phi = naive_svgd_phi(z.detach(), prior.score(z.detach()), None if bandwidth == "median" else bandwidth)
    # gradient descent on the surrogate moves every z_i along +phi*(z_i)
    torch.testing.assert_close(z.grad, -phi / n)


def test_descending_the_stein_surrogate_moves_codes_towards_the_prior():
    z = torch.randn(100, 2, generator=torch.Generator().manual_seed(10)) * 0.3 + 3.0
    z.requires_grad_(True)
    optimizer = torch.optim.SGD([z], lr=30.0)  # the gradient is phi*/n: an SVGD step of 0.3
    for _ in range(100):
        optimizer.zero_grad()
        Stein()(testing.point_codes(z)).backward()
        optimizer.step()
    z = z.detach()
    assert z.mean(0).abs().max() < 0.4  # started at 3
    assert ((z.var(0) - 1.0).abs() < 0.25).all()  # started at 0.09


# ---------------------------------------------------------------- adversarial


def train_discriminator(divergence, shift, steps=300, n=100, dim=2, seed=11):
    torch.manual_seed(seed)
    (adversary,) = divergence.adversaries()
    optimizer = torch.optim.Adam(adversary.module.parameters(), lr=adversary.lr, betas=adversary.betas)
    for _ in range(steps):
        codes = testing.point_codes(torch.randn(n, dim) + shift)
        for _ in range(adversary.steps_per_batch):
            optimizer.zero_grad()
            adversary.loss(codes).backward()
            optimizer.step()
    with torch.no_grad():
        prior_logits = divergence.logits(torch.randn(4000, dim))
        code_logits = divergence.logits(torch.randn(4000, dim) + shift)
    return 0.5 * (float((prior_logits > 0).float().mean()) + float((code_logits <= 0).float().mean()))


def adversarial(dim=2, **params):
    divergence = Adversarial(hidden=[128, 128], lr=1e-3, **params)
    divergence.setup(dim)
    return divergence


def test_aae_discriminator_is_at_chance_when_codes_follow_the_prior():
    accuracy = train_discriminator(adversarial(), shift=0.0)
    assert 0.4 <= accuracy <= 0.6


def test_aae_discriminator_separates_codes_far_from_the_prior():
    accuracy = train_discriminator(adversarial(), shift=4.0)
    assert accuracy > 0.97


def test_aae_generator_loss_is_minus_log_d_and_leaves_the_discriminator_alone():
    divergence = adversarial(dim=3)
    z = torch.randn(16, 3, requires_grad=True)
    loss = divergence(testing.point_codes(z))
    loss.backward()
    assert all(p.grad is None for p in divergence.discriminator.parameters())
    # independent: -mean log sigmoid(D(z)) through plain autograd
    z2 = z.detach().clone().requires_grad_(True)
    expected = -torch.log(torch.sigmoid(divergence.discriminator(z2).squeeze(-1))).mean()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(z.grad, z2.grad)


def test_aae_generator_loss_is_log_two_for_an_undecided_discriminator():
    divergence = adversarial(dim=2)
    with torch.no_grad():
        for p in divergence.discriminator[-1].parameters():
            p.zero_()
    assert abs(float(divergence(testing.point_codes(torch.randn(8, 2)))) - math.log(2)) < 1e-6


def test_aae_adversary_uses_the_params_and_is_checkpointed():
    divergence = Adversarial(lr=3e-4, betas=(0.4, 0.8), steps_per_batch=2)
    divergence.setup(5)
    (adversary,) = divergence.adversaries()
    assert (adversary.lr, adversary.betas, adversary.steps_per_batch) == (3e-4, (0.4, 0.8), 2)
    assert adversary.module is divergence.discriminator
    assert any(k.startswith("discriminator.") for k in divergence.state_dict())
    assert divergence.discriminator[0].in_features == 5


# --------------------------------------------------------------- registration


def test_divergences_are_registered_by_name():
    registry = load_registry()
    for name, cls in [("mmd", MMD), ("stein", Stein), ("adversarial", Adversarial), ("kl", KL)]:
        assert registry.get("divergence", name).cls is cls


def test_mmd_params_are_validated():
    with pytest.raises(ValueError):
        MMD(scales=[])
    with pytest.raises(ValueError):
        MMD(kernel="laplace")
    with pytest.raises(ValueError):
        MMD(sigma2=0.0)
    with pytest.raises(ValueError):
        MMD(bandwidth="mean")
