"""Negative log-likelihood of the test set by importance sampling."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed_plugins.metrics.encoding import (device_generator, evaluating, input_batches,
                                       posterior_log_prob, require_density, subset_indices)

_SUBSET_SALT = 0x4E4C4C  # "NLL": which test points a reduced protocol keeps
_SAMPLE_SALT = 0x4E4C4D  # the importance samples


def log_marginal_likelihood(model, x: Tensor, k: int, max_rows: int,
                            generator: torch.Generator | None = None) -> Tensor:
    """Importance-sampled log p(x) for each row of ``x``, proposal q(z|x).

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,
    z_k ~ q(z|x). The K samples go through the decoder in chunks of at most
    ``max_rows`` (point, sample) pairs, each chunk reduced to its own
    logsumexp at once, so memory does not grow with K.
    """
    posterior = model.encoder(x)
    require_density(posterior, "nll")
    batch = x.shape[0]
    chunk = max(1, min(k, max_rows // batch))
    # x repeated chunk times, sample-major (row s * B + i is point i), built once per
    # batch: a shorter last chunk uses its leading rows
    x_rep = x.unsqueeze(0).expand(chunk, *x.shape).reshape(chunk * batch, *x.shape[1:])
    chunk_lse = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        z = posterior.rsample_n(kc, generator)  # (kc, B, D)
        flat_z = z.reshape(kc * batch, -1)
        log_w = (model.decoder.log_prob(x_rep[:kc * batch], flat_z).view(kc, batch)
                 + model.prior.log_prob(flat_z).view(kc, batch)
                 - posterior_log_prob(posterior, z, "nll"))
        chunk_lse.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(chunk_lse), dim=0) - math.log(k)


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

    Params: ``k`` (default 5000 as in InfoVAE), ``test_subset`` (None: the
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

    def produces(self) -> list[str]:
        return ["nll", "nll_se", "k", "n"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        x = ctx.test.x[subset_indices(len(ctx.test), p.test_subset, ctx.generator(_SUBSET_SALT))]
        generator = device_generator(ctx.generator(_SAMPLE_SALT), ctx.device)
        with evaluating(ctx.model) as model:
            log_px = [log_marginal_likelihood(model, batch, p.k, p.max_rows, generator)
                      for batch in input_batches(x, p.batch_size, ctx.device)]
        nll = -torch.cat(log_px).double().cpu()
        n = nll.numel()
        se = float(nll.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
        return MetricResult(values={"nll": float(nll.mean()), "nll_se": se,
                                    "k": float(p.k), "n": float(n)})


@hookimpl
def register_metrics(register):
    register("nll", ImportanceSampledNLL)
