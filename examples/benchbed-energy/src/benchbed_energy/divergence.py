"""The "energy" divergence: Szekely's energy distance between the codes and prior samples.

Written in torch because training differentiates through it (scipy.stats.energy_distance
is one-dimensional NumPy, without gradients).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from benchbed.components import Codes, Divergence, Params


def distance_powers(x: Tensor, y: Tensor, exponent: float) -> Tensor:
    """|x_i - y_j|^exponent for x (n, d) and y (m, d): a matrix of shape (n, m).

    torch.cdist computes the distances. Its default mode switches to the
    |x|^2 + |y|^2 - 2 x.y expansion above 25 rows, which leaves rounding
    noise where a distance is 0 (x against itself); the direct mode keeps
    those zeros exact. cdist's gradient at a zero distance is 0, so the
    infinite slope of d^b (b < 1) at d = 0 gives no NaN.
    """
    dist = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    return dist.pow(exponent)


def mean_off_diagonal(matrix: Tensor) -> Tensor:
    """Mean over i != j of a square matrix (the pairs of distinct samples)."""
    n = matrix.shape[0]
    return (matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1))


def energy_distance(x: Tensor, y: Tensor, exponent: float = 1.0, unbiased: bool = True) -> Tensor:
    """2 E|X - Y|^b - E|X - X'|^b - E|Y - Y'|^b from samples x (n, d) and y (m, d)."""
    within_x = distance_powers(x, x, exponent)
    within_y = distance_powers(y, y, exponent)
    between = distance_powers(x, y, exponent)
    if unbiased:
        if x.shape[0] < 2 or y.shape[0] < 2:
            raise ValueError("the unbiased energy distance needs at least two samples on each side")
        within = mean_off_diagonal(within_x) + mean_off_diagonal(within_y)
    else:
        within = within_x.mean() + within_y.mean()
    return 2.0 * between.mean() - within


class EnergyDistance(Divergence):
    """Energy distance D(q(z), p(z)) between a batch of codes and as many prior samples.

    Each call draws n fresh samples z0 ~ p(z) (n = batch size) and compares
    them with the codes z ~ q(z) (Szekely & Rizzo 2013):

        D = 2 E|Z - Z0|^b - E|Z - Z'|^b - E|Z0 - Z0'|^b,   0 < b < 2

    with |.| the Euclidean norm. D >= 0, and D = 0 only when q = p. It is
    the MMD^2 of the kernel k(z, z') = |z|^b + |z'|^b - |z - z'|^b (both
    estimators below are that MMD's), so it needs no bandwidth.

    Estimators on z_1..z_n and z0_1..z0_n:
      - unbiased (U-statistic): the within-sample means skip i = j,
            D = 2/n^2 sum_{i,j} |z_i - z0_j|^b - 1/(n(n-1)) sum_{i != j} |z_i - z_j|^b
                - 1/(n(n-1)) sum_{i != j} |z0_i - z0_j|^b;
        its mean is exactly D (0 when q = p), so single batches can be negative;
      - biased (V-statistic): plain means over all n^2 pairs, i = j included;
        never negative, but above D on average.

    Params: estimator, exponent.
    """

    term_name = "energy"  # the name of this term in the training log

    class Params(Params):
        estimator: Literal["unbiased", "biased"] = Field(
            "unbiased", description="unbiased U-statistic (skips i = j) or biased V-statistic")
        exponent: float = Field(1.0, gt=0, lt=2, description="b in |z - z'|^b; 0 < b < 2 "
                                "(at b = 2 only the means are compared)")

    def forward(self, codes: Codes) -> Tensor:
        z = codes.z
        z0 = codes.prior.sample(z.shape[0], z.shape[1], device=z.device).to(z.dtype)
        return energy_distance(z, z0, self.params.exponent,
                               unbiased=self.params.estimator == "unbiased")
