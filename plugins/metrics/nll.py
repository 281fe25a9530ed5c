"""Negative log-likelihood of the test set by importance sampling."""

from __future__ import annotations

import math
from typing import Callable

import torch
from pydantic import Field, NonNegativeFloat
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed.distributions import GaussianPosterior, Posterior
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics.encoding import (device_generator, evaluating, input_batches,
                                       posterior_log_prob, require_density, subset_indices)

_SUBSET_SALT = 0x4E4C4C  # "NLL": which test points a reduced protocol keeps
_SAMPLE_SALT = 0x4E4C4D  # the importance samples


def _log_mean_weight(model, x: Tensor, draws: list[tuple[Posterior, int]],
                     log_proposal: Callable[[Tensor], Tensor], max_rows: int,
                     generator: torch.Generator | None) -> Tensor:
    """log (1/K sum_k p(x|z_k) p(z_k) / r(z_k|x)) per row of ``x``, with ``n`` draws z_k from
    each (source, n) of ``draws`` (K their total) and log r given by ``log_proposal``.

    The draws go through the decoder in chunks of at most ``max_rows`` (point,
    sample) pairs, each chunk reduced to its own logsumexp at once, so memory
    does not grow with K."""
    batch = x.shape[0]
    chunk = max(1, min(max(n for _, n in draws), max_rows // batch))
    # x repeated chunk times, sample-major (row s * B + i is point i), built once per
    # batch: a shorter last chunk uses its leading rows
    x_rep = x.unsqueeze(0).expand(chunk, *x.shape).reshape(chunk * batch, *x.shape[1:])
    chunk_lse = []
    for source, n in draws:
        for start in range(0, n, chunk):
            kc = min(chunk, n - start)
            z = source.rsample_n(kc, generator)  # (kc, B, D)
            flat_z = z.reshape(kc * batch, -1)
            log_w = (model.decoder.log_prob(x_rep[:kc * batch], flat_z).view(kc, batch)
                     + model.prior.log_prob(flat_z).view(kc, batch)
                     - log_proposal(z))
            chunk_lse.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(chunk_lse), dim=0) - math.log(sum(n for _, n in draws))


def log_marginal_likelihood(model, x: Tensor, k: int, max_rows: int,
                            generator: torch.Generator | None = None) -> Tensor:
    """Importance-sampled log p(x) for each row of ``x``, proposal q(z|x).

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,
    z_k ~ q(z|x).
    """
    posterior = model.encoder(x)
    require_density(posterior, "nll")
    return _log_mean_weight(model, x, [(posterior, k)],
                            lambda z: posterior_log_prob(posterior, z, "nll"), max_rows, generator)


def log_marginal_likelihood_mixture(model, x: Tensor, k: int, widths: list[float], max_rows: int,
                                    generator: torch.Generator | None = None) -> Tensor:
    """Importance-sampled log p(x) with a defensive mixture of widened posteriors.

        r(z|x) = 1/J sum_j N(z; mu(x), sigma(x)^2 + s_j^2),   s_1 = 0 (q itself)

    K/J samples from each component (a stratified draw, weighted by the whole
    mixture: Veach & Guibas's balance heuristic), then
    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log r(z_k|x)] - log K.
    Unbiased in p(x) like any proposal; where q(z|x) is far narrower than the
    true posterior (an encoder no per-example KL keeps wide), the wider
    components carry the estimate, and the mixture costs at most log J nats
    against its best component.
    """
    posterior = model.encoder(x)
    require_density(posterior, "nll_defensive")
    if not isinstance(posterior, GaussianPosterior):
        raise BenchbedError(f"metric 'nll_defensive' widens a Gaussian q(z|x), but the encoder returns "
                            f"{type(posterior).__name__}; use 'nll' for other posteriors")
    # log(sigma^2 + s^2) in log space: sigma^2 underflows in float32 for VIMAE-like encoders
    comps = [GaussianPosterior(posterior.mean, torch.logaddexp(
        posterior.logvar, torch.full_like(posterior.logvar, 2 * math.log(s) if s > 0 else -math.inf)))
        for s in widths]
    per = max(1, k // len(comps))  # K rounded down to a multiple of J

    def log_mixture(z: Tensor) -> Tensor:
        return torch.logsumexp(torch.stack([c.log_prob(z) for c in comps]), dim=0) - math.log(len(comps))

    return _log_mean_weight(model, x, [(c, per) for c in comps], log_mixture, max_rows, generator)


class ImportanceSampledNLL(Metric):
    """Test negative log-likelihood -log p(x) in nats, by importance sampling (InfoVAE Table 1).

    Equation, per test point x, with K samples z_k ~ q(z|x) (the encoder's
    posterior is the proposal):

        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K

    The estimate is a stochastic lower bound on log p(x) (the IWAE bound) that
    tightens as K grows; it is exact for any K when q(z|x) is the true
    posterior. log p(x|z) is the decoder's exact likelihood (``decoder.log_prob``),
    so this works for MLP, convolutional and PixelCNN decoders alike.
    Needs a stochastic encoder (a density q(z|x)).

    Values: ``nll`` (mean over test points), ``nll_se`` (its standard error),
    ``k`` (samples per point), ``n`` (test points).

    Params: ``k`` (default 5000; InfoVAE gives no K), ``test_subset`` (None: the
    whole test set; else that many points drawn from the run seed),
    ``batch_size`` (test points encoded together), ``max_rows`` ((point,
    sample) pairs per decoder call: lower it for big decoders such as PixelCNN).
    """

    class Params(Params):
        k: int = Field(5000, gt=0, description="importance samples per test point")
        test_subset: int | None = Field(None, gt=0, description="number of test points "
                                        "(drawn from the run seed); None: all")
        batch_size: int = Field(100, gt=0, description="test points per encoder batch")
        max_rows: int = Field(10_000, gt=0, description="(point, sample) pairs per decoder "
                              "call; bounds memory")

    def _log_px(self, model, batch: Tensor, generator) -> Tensor:
        return log_marginal_likelihood(model, batch, self.params.k, self.params.max_rows, generator)

    def produces(self) -> list[str]:
        return ["nll", "nll_se", "k", "n"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        x = ctx.test.x[subset_indices(len(ctx.test), p.test_subset, ctx.generator(_SUBSET_SALT))]
        generator = device_generator(ctx.generator(_SAMPLE_SALT), ctx.device)
        with evaluating(ctx.model) as model:
            log_px = [self._log_px(model, batch, generator)
                      for batch in input_batches(x, p.batch_size, ctx.device)]
        nll = -torch.cat(log_px).double().cpu()
        n = nll.numel()
        se = float(nll.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
        return MetricResult(values={"nll": float(nll.mean()), "nll_se": se,
                                    "k": float(p.k), "n": float(n)})


class DefensiveNLL(ImportanceSampledNLL):
    """Test NLL in nats by importance sampling with a defensive mixture proposal.

    Equation, per test point x, with r the equal mixture of q(z|x) widened by
    each s_j in ``widths`` (s = 0 keeps q itself) and K/J samples from each:

        r(z|x) = 1/J sum_j N(mu(x), sigma(x)^2 + s_j^2)
        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log r(z_k|x)] - log K

    Why: with the posterior as proposal (``nll``) the estimate is only as good
    as q(z|x) is wide. An encoder trained without a per-example KL (MMD-VAE,
    Stein, adversarial, L_AE) may shrink sigma(x) far below the width over which
    p(x|z) stays high, and then ``nll`` over-estimates the NLL by tens of nats.
    Both are stochastic upper bounds on -log p(x): the lower is the tighter.

    Values: ``nll``, ``nll_se``, ``k``, ``n``. Params: those of ``nll`` and
    ``widths``.
    """

    class Params(ImportanceSampledNLL.Params):
        widths: list[NonNegativeFloat] = Field([0.0, 0.1, 0.3, 1.0], min_length=1,
                                               description="s_j added in quadrature to sigma(x); "
                                                           "0 keeps q(z|x) itself")

    def _log_px(self, model, batch: Tensor, generator) -> Tensor:
        p = self.params
        return log_marginal_likelihood_mixture(model, batch, p.k, p.widths, p.max_rows, generator)


@hookimpl
def register_metrics(register):
    register("nll", ImportanceSampledNLL)
    register("nll_defensive", DefensiveNLL)
