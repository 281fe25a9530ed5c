"""Metrics of the latent space: full-data MMD to the prior, log det of the code
covariance (InfoVAE section 4.2.1, Figure 3 A/B/D) and mutual information
I_q(x; z) (InfoVAE Appendix B.2, Figure 1)."""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from pydantic import Field, PositiveFloat
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed_plugins.metrics.encoding import (device_generator, encode, evaluating, input_batches,
                                       posterior_log_prob, require_density, subset_indices)
from benchbed_plugins.divergences.kernels import (imq_kernel, mmd_from_kernels, pairwise_sq_dists,
                                      rbf_kernel)

Kernel = Callable[[Tensor], Tensor]  # squared distances -> kernel values

# generator salts: one stream per use, so changing one draw leaves the others alone
_SUBSET_SALT = 0x4C4D31
_CODE_SALT = 0x4C4D32
_PRIOR_SALT = 0x4C4D33
_PROBE_SEED = 0  # probes reuse one seed: curves differ by the model, not by the noise


def _probe_codes(model, x: Tensor, codes: str) -> Tensor:
    """The probe batch's codes (call in eval mode): z ~ q(z|x) under the probe seed, or the means."""
    posterior = model.encoder(x)
    if codes != "sample":
        return posterior.mean
    return posterior.rsample(torch.Generator(device=x.device).manual_seed(_PROBE_SEED))

CodeKind = Literal["sample", "mean"]


# --------------------------------------------------------------------- codes


def split_codes(ctx, codes: CodeKind, test_subset: int | None, batch_size: int,
                subset_salt: int = _SUBSET_SALT) -> Tensor:
    """Codes of the (sub)sampled test set on ``ctx.device``: one z ~ q(z|x) per
    point (an aggregate-posterior sample) or the posterior means."""
    idx = subset_indices(len(ctx.test), test_subset, ctx.generator(subset_salt))
    generator = device_generator(ctx.generator(_CODE_SALT), ctx.device)
    with evaluating(ctx.model) as model:
        encoded = encode(model, ctx.test.x[idx], ctx.device, batch_size, generator,
                         sample=codes == "sample")
    z = encoded.sample if codes == "sample" else encoded.mean
    return z.to(ctx.device)


# ----------------------------------------------------------------------- MMD


def evaluation_kernel(kind: Literal["rbf", "imq"], dim: int, scale: float) -> Kernel:
    """The fixed evaluation kernel with base scale 2 * dim * scale.

    rbf: exp(-d2 / (2 dim scale)); imq: C / (C + d2) with C = 2 dim scale.
    For a standard normal prior E||z - z'||^2 = 2 dim, so at scale 1 the
    kernel sits at a typical pair's distance in every dimension (WAE's C).
    """
    base = 2.0 * dim * scale
    if kind == "rbf":
        return lambda d2: rbf_kernel(d2, base)
    return lambda d2: imq_kernel(d2, base)


def _blocks(n: int, block_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + block_size, n)) for start in range(0, n, block_size)]


def kernel_sum(a: Tensor, b: Tensor | None, kernel: Kernel, block_size: int,
               drop_diagonal: bool = False) -> float:
    """sum_ij k(a_i, b_j), one (block x block) tile at a time.

    ``b=None`` means b = a: the tiles below the diagonal mirror those above,
    so only the upper ones are computed (and counted twice);
    ``drop_diagonal`` then leaves out the k(a_i, a_i) terms (U-statistic).
    Tiles are summed in float32, the running total in float64.
    """
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    rows = _blocks(a.shape[0], block_size)
    if b is None:
        for i, (r0, r1) in enumerate(rows):
            for c0, c1 in rows[i:]:
                tile = kernel(pairwise_sq_dists(a[r0:r1], a[c0:c1]))
                if c0 == r0:
                    total += tile.sum().double()
                    if drop_diagonal:
                        total -= tile.diagonal().sum().double()
                else:
                    total += 2.0 * tile.sum().double()
    else:
        for r0, r1 in rows:
            for c0, c1 in _blocks(b.shape[0], block_size):
                total += kernel(pairwise_sq_dists(a[r0:r1], b[c0:c1])).sum().double()
    return float(total)


def blockwise_mmd(x: Tensor, y: Tensor, kernel: Kernel, block_size: int = 1024,
                  unbiased: bool = True) -> float:
    """MMD^2 between all of x (n, d) and all of y (m, d) without an n x m matrix.

    unbiased: S'xx / (n(n-1)) + S'yy / (m(m-1)) - 2 Sxy / (nm), S' without i = j;
    biased:   Sxx / n^2 + Syy / m^2 - 2 Sxy / (nm).
    """
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError("the unbiased MMD needs at least two samples on each side")
    sxx = kernel_sum(x, None, kernel, block_size, drop_diagonal=unbiased)
    syy = kernel_sum(y, None, kernel, block_size, drop_diagonal=unbiased)
    sxy = kernel_sum(x, y, kernel, block_size)
    if unbiased:
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)
    return sxx / n ** 2 + syy / m ** 2 - 2.0 * sxy / (n * m)


def mmd_standard_error(x: Tensor, y: Tensor, kernel: Kernel, block_size: int = 1024) -> float:
    """Standard error of the unbiased MMD^2 of n pairs (x_i, y_i), tile by tile.

    With h_ij = k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(y_i, x_j) (i != j), the
    U-statistic's variance is about (4/n) Var_i(g_i) + 2 / (n(n-1)) mean(h_ij^2),
    g_i = mean_j h_ij (Serfling 1980, 5.2.1; Gretton et al. 2012, Thm. 8 and 12): the
    first term dominates when q != p, the second is the whole of it when q = p, where
    g vanishes and the estimate is pure noise of that size. For ``blockwise_mmd``, whose
    cross term averages all n^2 pairs, it is conservative when q = p (about 1.3 times the
    spread of independent estimates at n = 150), and matches it when q != p.
    """
    n = x.shape[0]
    if y.shape[0] != n or n < 3:
        raise ValueError("the MMD standard error needs as many prior samples as codes, at least 3")
    g = torch.zeros(n, dtype=torch.float64, device=x.device)
    h2 = torch.zeros((), dtype=torch.float64, device=x.device)
    for r0, r1 in _blocks(n, block_size):
        for c0, c1 in _blocks(n, block_size):
            h = (kernel(pairwise_sq_dists(x[r0:r1], x[c0:c1])) + kernel(pairwise_sq_dists(y[r0:r1], y[c0:c1]))
                 - kernel(pairwise_sq_dists(x[r0:r1], y[c0:c1])) - kernel(pairwise_sq_dists(y[r0:r1], x[c0:c1])))
            if r0 == c0:
                h = h - torch.diag_embed(h.diagonal())  # i = j is not a pair
            h = h.double()
            g[r0:r1] += h.sum(1)
            h2 += (h * h).sum()
    g /= n - 1
    mean_h2 = float(h2) / (n * (n - 1))
    # The plug-in Var(g_i) carries each g_i's own sampling noise, about mean(h^2)/(n-1): take it out.
    var_g = max(float(g.var()) - mean_h2 / (n - 1), 0.0)
    return math.sqrt(4.0 / n * var_g + 2.0 * mean_h2 / (n * (n - 1)))


def prior_samples(prior, n: int, dim: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """n prior samples drawn on the CPU (any prior accepts a CPU generator there),
    then moved next to ``like``."""
    return prior.sample(n, dim, generator=generator, device="cpu").to(like.device, like.dtype)


class FullDataMMD(Metric):
    """MMD^2 between the test set's codes and as many prior samples (InfoVAE section 4.2.1, Fig. 3 A/D).

    Training only sees minibatch MMD; here every code of the test set (N up to
    tens of thousands) is compared with N samples z0 ~ p(z), tile by tile so
    no N x N matrix is ever held. Unbiased estimator (U-statistic):

        MMD^2 = 1/(N(N-1)) sum_{i != j} k(z_i, z_j) + 1/(N(N-1)) sum_{i != j} k(z0_i, z0_j)
                - 2/N^2 sum_{i, j} k(z_i, z0_j)

    (``estimator: biased`` keeps the i = j terms and divides by N^2.) The
    kernel is FIXED so runs are comparable (no median heuristic):
    ``kernel: rbf`` (default): k = exp(-||z - z'||^2 / (2 dim scale)), i.e. a
    Gaussian with sigma^2 = dim * scale; ``kernel: imq``:
    k = C / (C + ||z - z'||^2), C = 2 dim scale (WAE/VIMAE). At scale 1 both
    sit at the typical distance between two standard-normal samples.

    Codes: ``codes: sample`` (default) draws one z ~ q(z|x) per test point, a
    sample of the aggregate posterior q(z) as in InfoVAE; ``mean`` uses the
    posterior means. Trackable: ``probe`` computes the same statistic on the
    trainer's held-out batch (MMD-vs-iteration curves, InfoVAE Fig. 3 D).

    Values: ``mmd`` (the MMD^2 estimate, unitless; the kernel is named by the
    params), ``n`` (codes compared).

    Cost: about 2 N^2 kernel entries (the symmetric sums are computed once
    per pair of tiles); N = 10k takes about 1 s of one CPU core, N = 70k
    about a minute (benchmarks/full_mmd.py).

    Params: kernel, scale, estimator, codes, test_subset, block_size, batch_size.
    """

    trackable = True

    class Params(Params):
        kernel: Literal["rbf", "imq"] = Field("rbf", description="rbf: exp(-d2/(2 dim scale)); "
                                              "imq: C/(C+d2), C = 2 dim scale")
        scale: PositiveFloat = Field(1.0, description="multiplier of the kernel's base scale 2*dim")
        estimator: Literal["unbiased", "biased"] = Field("unbiased", description="U- or V-statistic")
        codes: CodeKind = Field("sample", description="sample: z ~ q(z|x) (aggregate posterior); "
                                "mean: posterior means")
        test_subset: int | None = Field(None, ge=2, description="number of test points (drawn "
                                        "from the run seed); None: all")
        block_size: int | None = Field(None, gt=0, description="rows per kernel tile; None: "
                                       "1024 on a CPU (tiles stay in cache), 8192 on a GPU")
        batch_size: int = Field(500, gt=0, description="test points per encoder batch")

    def _mmd(self, z: Tensor, z0: Tensor) -> float:
        kernel = evaluation_kernel(self.params.kernel, z.shape[1], self.params.scale)
        block = self.params.block_size or (1024 if z.device.type == "cpu" else 8192)
        return blockwise_mmd(z, z0, kernel, block, unbiased=self.params.estimator == "unbiased")

    def produces(self) -> list[str]:
        return ["mmd", "mmd_se", "n"] if self.params.estimator == "unbiased" else ["mmd", "n"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        z = split_codes(ctx, p.codes, p.test_subset, p.batch_size)
        z0 = prior_samples(ctx.model.prior, z.shape[0], z.shape[1], ctx.generator(_PRIOR_SALT), z)
        values = {"mmd": self._mmd(z, z0), "n": float(z.shape[0])}
        if p.estimator == "unbiased":  # the leaderboard's noise floor for a single run
            kernel = evaluation_kernel(p.kernel, z.shape[1], p.scale)
            block = p.block_size or (1024 if z.device.type == "cpu" else 8192)
            values["mmd_se"] = mmd_standard_error(z, z0, kernel, block)
        return MetricResult(values=values)

    def probe(self, model, x: Tensor) -> dict[str, float]:
        with evaluating(model):
            z = _probe_codes(model, x, self.params.codes)
            z0 = prior_samples(model.prior, z.shape[0], z.shape[1],
                               torch.Generator().manual_seed(_PROBE_SEED), z)
            kernel = evaluation_kernel(self.params.kernel, z.shape[1], self.params.scale)
            kxx, kyy = kernel(pairwise_sq_dists(z, z)), kernel(pairwise_sq_dists(z0, z0))
            kxy = kernel(pairwise_sq_dists(z, z0))
            mmd = mmd_from_kernels(kxx, kyy, kxy, unbiased=self.params.estimator == "unbiased")
        return {"mmd": float(mmd)}


# ---------------------------------------------------------------- log det


def logdet_per_dim(z: Tensor) -> float:
    """log det of the unbiased sample covariance 1/(N-1) sum (z_i - zbar)(z_i - zbar)^T,
    divided by the dimension; -inf when the covariance is singular."""
    cov = torch.cov(z.double().T, correction=1).reshape(z.shape[1], z.shape[1])
    sign, logabsdet = torch.linalg.slogdet(cov)
    return float(logabsdet) / z.shape[1] if sign > 0 else float("-inf")


class LogDetCovariance(Metric):
    """log det of the covariance of q(z) over the test set, per latent dimension (InfoVAE Fig. 3 B).

        Sigma = 1/(N-1) sum_i (z_i - zbar)(z_i - zbar)^T,   value = log det(Sigma) / dim

    with z_i ~ q(z|x_i), one per test point (``codes: sample``, default; a
    sample of the aggregate posterior as in InfoVAE) or the posterior means
    (``codes: mean``). For a standard normal prior the ideal is 0: negative
    means q(z) under-covers p(z) (too little variance per dimension),
    positive over-covers. -inf when the codes span fewer dimensions than the
    latent space.

    Values: ``logdet_cov``, ``n``. Trackable: during training it reads the
    probe batch, so Fig. 3 (B) can be watched settling.

    Params: codes, test_subset, batch_size.
    """

    trackable = True

    class Params(Params):
        codes: CodeKind = Field("sample", description="sample: z ~ q(z|x); mean: posterior means")
        test_subset: int | None = Field(None, ge=2, description="number of test points (drawn "
                                        "from the run seed); None: all")
        batch_size: int = Field(500, gt=0, description="test points per encoder batch")

    def produces(self) -> list[str]:
        return ["logdet_cov", "n"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        z = split_codes(ctx, p.codes, p.test_subset, p.batch_size)
        return MetricResult(values={"logdet_cov": logdet_per_dim(z), "n": float(z.shape[0])})

    def probe(self, model, x: Tensor) -> dict[str, float]:
        with evaluating(model):
            z = _probe_codes(model, x, self.params.codes)
        return {"logdet_cov": logdet_per_dim(z)}


# ------------------------------------------------------- mutual information


def mutual_info_minibatch(posteriors: list, samples: list[Tensor], metric: str = "mutual_info") -> float:
    """InfoVAE B.2 over the M points split into batches.

        I ~= 1/M sum_i [log q(z_i|x_i) - log(1/M sum_j q(z_i|x_j))],  z_i ~ q(z|x_i)

    ``posteriors[b]`` is q(.|x) for batch b and ``samples[b]`` its z's. Each
    row of the M x M matrix log q(z_i|x_j) is built one batch of rows at a
    time. Every term is <= log M (the j = i term is in the sum), so the
    estimate never exceeds log M.
    """
    m = sum(z.shape[0] for z in samples)
    total = 0.0
    for posterior_i, z_i in zip(posteriors, samples):
        own = posterior_log_prob(posterior_i, z_i, metric)  # (B_i,)
        # (B_i, 1, D) broadcasts against each batch's (B_j, D) parameters -> (B_i, B_j)
        cross = torch.cat([posterior_log_prob(posterior_j, z_i.unsqueeze(1), metric)
                           for posterior_j in posteriors], dim=1)
        marginal = torch.logsumexp(cross, dim=1) - math.log(m)
        total += float((own - marginal).double().sum())
    return total / m


class MutualInformation(Metric):
    """Mutual information I_q(x; z) of the encoder's joint q(x, z), minibatch estimator (InfoVAE App. B.2).

    With M test points x_i and z_i ~ q(z|x_i):

        I_q(x; z) ~= 1/M sum_i [ log q(z_i|x_i) - log( 1/M sum_j q(z_i|x_j) ) ]

    The estimate is bounded above by log M (reported as ``log_m``): it is
    good while I is well below log M and saturates at the ceiling otherwise
    (the true MI of an M-point empirical distribution has the same bound).
    Default M = 1000 (ceiling 6.91 nats), averaged over ``repeats`` draws of
    M points and samples; raise M for highly informative codes (cost M^2 D).
    Needs a stochastic encoder (a density q(z|x)). Trackable: ``probe`` uses
    the trainer's held-out batch as the M points (InfoVAE Fig. 1).

    Values: ``mutual_info`` (nats), ``mutual_info_se`` (standard error over
    repeats; NaN for one repeat), ``log_m``.

    Params: m (capped at the test-set size), repeats, batch_size.
    """

    trackable = True

    class Params(Params):
        m: int = Field(1000, ge=2, description="points per estimate (ceiling log m)")
        repeats: int = Field(10, gt=0, description="estimates averaged, each on fresh points and samples")
        batch_size: int = Field(500, gt=0, description="points per encoder batch / row block")

    def produces(self) -> list[str]:
        return ["mutual_info", "mutual_info_se", "log_m"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        m = min(p.m, len(ctx.test))
        subset_gen = ctx.generator(_SUBSET_SALT)
        sample_gen = device_generator(ctx.generator(_CODE_SALT), ctx.device)
        estimates = []
        with evaluating(ctx.model) as model:
            for _ in range(p.repeats):
                x = ctx.test.x[subset_indices(len(ctx.test), m, subset_gen)]
                posteriors, samples = [], []
                for batch in input_batches(x, p.batch_size, ctx.device):
                    posterior = model.encoder(batch)
                    require_density(posterior, "mutual_info")
                    posteriors.append(posterior)
                    samples.append(posterior.rsample(sample_gen))
                estimates.append(mutual_info_minibatch(posteriors, samples))
        est = torch.tensor(estimates, dtype=torch.float64)
        se = float(est.std() / math.sqrt(len(est))) if len(est) > 1 else float("nan")
        return MetricResult(values={"mutual_info": float(est.mean()), "mutual_info_se": se,
                                    "log_m": math.log(m)})

    def probe(self, model, x: Tensor) -> dict[str, float]:
        with evaluating(model):
            posterior = model.encoder(x)
            require_density(posterior, "mutual_info")
            generator = torch.Generator(device=x.device).manual_seed(_PROBE_SEED)
            mi = mutual_info_minibatch([posterior], [posterior.rsample(generator)])
        return {"mutual_info": mi, "log_m": math.log(x.shape[0])}


@hookimpl
def register_metrics(register):
    register("mmd", FullDataMMD)
    register("logdet_cov", LogDetCovariance)
    register("mutual_info", MutualInformation)
