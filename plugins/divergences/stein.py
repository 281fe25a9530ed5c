"""The "stein" divergence: InfoVAE's Stein variational gradient surrogate (section 4.1.2)."""

from __future__ import annotations

import math
from typing import Literal, Union

import torch
from pydantic import Field, PositiveFloat
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Codes, Divergence, Params
from benchbed_plugins.divergences.kernels import median_sq_dist, pairwise_sq_dists, rbf_kernel


def svgd_direction(z: Tensor, score: Tensor, bandwidth: float | Tensor) -> Tensor:
    """phi*(z_i) = 1/n sum_j [k(z_j, z_i) score(z_j) + grad_{z_j} k(z_j, z_i)] for every i.

    With k(a, b) = exp(-||a - b||^2 / h), grad_a k(a, b) = -(2/h) (a - b) k(a, b), so
    sum_j grad_{z_j} k(z_j, z_i) = (2/h) (z_i sum_j K_ij - sum_j K_ij z_j).
    Returns shape (n, d); no gradient is tracked through it by the caller.
    """
    n = z.shape[0]
    K = rbf_kernel(pairwise_sq_dists(z, z), bandwidth)  # symmetric
    drive = K @ score  # pulls particles towards high p(z)
    repulse = (2.0 / bandwidth) * (z * K.sum(1, keepdim=True) - K @ z)  # keeps them apart
    return (drive + repulse) / n


def svgd_bandwidth(z: Tensor) -> Tensor:
    """Liu & Wang's median heuristic h = med^2 / log(n + 1).

    med^2 is the median squared distance between distinct particles, so the
    other particles' total weight is about n exp(-med^2/h) = n/(n+1) ~ 1,
    balancing a particle's own weight k(z_i, z_i) = 1. log(n + 1) rather than
    log n keeps h finite for n = 1 (median_sq_dist floors it above 0).
    """
    n = z.shape[0]
    return median_sq_dist(pairwise_sq_dists(z, z), exclude_diagonal=[True]) / math.log(n + 1)


class Stein(Divergence):
    """Stein variational gradient surrogate (InfoVAE section 4.1.2); not a true divergence.

    For the batch of codes z_1..z_n and an RBF kernel k(a, b) = exp(-||a - b||^2 / h),

        phi*(z_i) = 1/n sum_j [ k(z_j, z_i) grad log p(z_j) + grad_{z_j} k(z_j, z_i) ]

    is the direction that decreases KL(q(z) || p(z)) fastest (Liu & Wang 2016,
    Lemma 3.2); grad log p is ``prior.score``. The returned loss is

        D_hat = - 1/n sum_i z_i . stop_gradient(phi*(z_i)),

    whose gradient in z_i is -phi*(z_i)/n: gradient DESCENT on D_hat moves
    every code along +phi*, i.e. descends KL(q(z)||p(z)). InfoVAE §4.1.2 prints
    the surrogate as z^T stop_gradient(phi*) inside a criterion that subtracts
    lambda * D; taken literally that ascends the KL, so the sign here is ours
    (the suite names it). Its value carries no meaning: only its gradient
    does, and it may be negative.

    Bandwidth h: "median" (default) takes h = med^2 / log(n + 1), the
    heuristic of Liu & Wang's released code (their paper writes log n), with
    med^2 the median squared distance between distinct codes (no gradient);
    a number fixes h.

    Params: bandwidth.
    """

    term_name = "stein"

    class Params(Params):
        bandwidth: Union[PositiveFloat, Literal["median"]] = Field(
            "median", description="RBF h in exp(-d^2/h): 'median' for med^2/log(n+1), or a number")

    def direction(self, codes: Codes) -> Tensor:
        """phi*(z_i) for each code, computed without gradient."""
        with torch.no_grad():
            z = codes.z.detach()
            h = svgd_bandwidth(z) if self.params.bandwidth == "median" else float(self.params.bandwidth)
            return svgd_direction(z, codes.prior.score(z), h)

    def forward(self, codes: Codes) -> Tensor:
        phi = self.direction(codes)
        return -(codes.z * phi).sum(1).mean()


@hookimpl
def register_divergences(register):
    register("stein", Stein)
