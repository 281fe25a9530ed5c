"""Total correlation of the aggregate posterior under a Gaussian fit (unsupervised)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from benchbed import hookimpl
from benchbed.components import Metric, MetricResult, Params
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics.latent_metrics import split_codes


def gaussian_total_correlation(z: np.ndarray) -> float:
    """TC of N(mu, Sigma) fitted to the rows of z: 0.5 (sum_d log Sigma_dd - log det Sigma), nats."""
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.log(np.diag(cov)).sum() - logdet))


class GaussianTotalCorrelation(Metric):
    """Total correlation of q(z) under a Gaussian fit: 0.5 (sum_d log Sigma_dd - log det Sigma), nats; no labels needed.

    TC(z) = KL(q(z) || prod_d q(z_d)) (Watanabe 1960), the quantity
    beta-TCVAE and FactorVAE penalise. For q(z) ~ N(mu, Sigma) it has the
    closed form

        TC = 1/2 ( sum_d log Sigma_dd - log det Sigma ) >= 0,

    0 iff Sigma is diagonal; for two unit Gaussians of correlation rho,
    -1/2 log(1 - rho^2). Sigma is the sample covariance of the test codes:
    ``codes: sample`` (default) draws z ~ q(z|x), one per test point, a
    sample of the aggregate posterior; ``mean`` uses the posterior means.
    It sees only second moments: for a non-Gaussian q(z) it is the TC of the
    Gaussian fit, not of q(z). Invariant to rescaling and permuting latents.
    +inf when the codes span fewer dimensions than the latent space.

    Values: ``tc`` (nats), ``tc_per_dim``, ``n``.
    Params: codes, test_subset, batch_size.
    """

    class Params(Params):
        codes: Literal["sample", "mean"] = Field("sample", description="sample: z ~ q(z|x); "
                                                 "mean: posterior means")
        test_subset: int | None = Field(10000, ge=2, description="test points (drawn from the "
                                        "run seed); None: all")
        batch_size: int = Field(500, gt=0, description="test points per encoder batch")

    def produces(self) -> list[str]:
        return ["tc", "tc_per_dim", "n"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        p = self.params
        z = split_codes(ctx, p.codes, p.test_subset, p.batch_size)
        if not torch.isfinite(z).all():
            raise BenchbedError("gaussian_tc: non-finite codes; the run has probably diverged")
        tc = gaussian_total_correlation(z.double().cpu().numpy())
        return MetricResult(values={"tc": tc, "tc_per_dim": tc / z.shape[1], "n": float(z.shape[0])})


@hookimpl
def register_metrics(register):
    register("gaussian_tc", GaussianTotalCorrelation)
