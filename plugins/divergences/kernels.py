"""Kernels and pairwise distances shared by divergences and metrics (a helper module: no hooks).

Every function takes and returns plain tensors so metrics can reuse them on
whole datasets:

- ``pairwise_sq_dists(x, y)``: matrix of ||x_i - y_j||^2, shape (n, m).
- ``imq_kernel(d2, C)``: inverse multiquadratic C / (C + d2).
- ``rbf_kernel(d2, bandwidth)``: Gaussian exp(-d2 / bandwidth); ``bandwidth``
  is in squared-distance units (h in Liu & Wang's SVGD, 2 sigma^2 in the
  usual exp(-d2 / (2 sigma^2)) form).
- ``median_sq_dist(*d2s, exclude_diagonal=...)``: the median heuristic.
- ``multiscale_kernel(d2, kind, base, scales)``: sum of one kernel over
  several scales of a base scale (WAE's multi-scale IMQ).
- ``mmd_from_kernels(kxx, kyy, kxy, unbiased)``: the MMD^2 estimate from the
  three kernel matrices.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def pairwise_sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """||x_i - y_j||^2 for x (n, d) and y (m, d): shape (n, m), never negative.

    Uses |x|^2 + |y|^2 - 2 x y^T (one matrix multiply), which is several
    times faster than broadcasting x[:, None] - y[None] and needs no (n, m, d)
    buffer. Rounding can make the expansion slightly negative; it is clamped
    at 0.
    """
    x_sq = x.pow(2).sum(1, keepdim=True)
    y_sq = y.pow(2).sum(1, keepdim=True)
    return (x_sq + y_sq.T - 2.0 * (x @ y.T)).clamp_min(0.0)


def imq_kernel(d2: Tensor, C: float | Tensor) -> Tensor:
    """Inverse multiquadratic kernel k = C / (C + ||x - y||^2) from squared distances."""
    return C / (C + d2)


def rbf_kernel(d2: Tensor, bandwidth: float | Tensor) -> Tensor:
    """Gaussian kernel k = exp(-||x - y||^2 / bandwidth) from squared distances.

    ``bandwidth`` is in squared-distance units: exp(-d2 / (2 sigma^2)) is
    ``bandwidth = 2 * sigma**2``.
    """
    return torch.exp(-d2 / bandwidth)


def median_sq_dist(*d2s: Tensor, exclude_diagonal: Sequence[bool] | None = None) -> Tensor:
    """Median of the squared distances in one or more distance matrices (no gradient).

    ``exclude_diagonal[i]`` drops the zero self-distances of a square matrix
    ``d2s[i]`` (a set against itself), which would otherwise pull the median
    down. Since squaring is monotone this is also (median distance)^2. The
    result is clamped away from 0 so it can divide.
    """
    if exclude_diagonal is None:
        exclude_diagonal = [False] * len(d2s)
    pieces = []
    for d2, drop in zip(d2s, exclude_diagonal):
        d2 = d2.detach()
        if drop:
            n = d2.shape[0]
            # strictly upper triangle: each unordered pair once, no diagonal
            rows, cols = torch.triu_indices(n, n, offset=1, device=d2.device)
            pieces.append(d2[rows, cols])
        else:
            pieces.append(d2.reshape(-1))
    return torch.cat(pieces).median().clamp_min(1e-12)


def multiscale_kernel(d2: Tensor, kind: str, base: float | Tensor,
                      scales: Sequence[float] = (1.0,)) -> Tensor:
    """sum_s k(d2; s * base) for kind "imq" (base = C) or "rbf" (base = bandwidth).

    A sum of positive-definite kernels is positive definite, so the MMD of
    the sum is the sum of the MMDs at each scale.
    """
    kernel = {"imq": imq_kernel, "rbf": rbf_kernel}[kind]
    total = kernel(d2, scales[0] * base)
    for scale in scales[1:]:
        total = total + kernel(d2, scale * base)
    return total


def mmd_from_kernels(kxx: Tensor, kyy: Tensor, kxy: Tensor, unbiased: bool = True) -> Tensor:
    """MMD^2 between samples x (n) and y (m) from kxx (n, n), kyy (m, m), kxy (n, m).

    unbiased (U-statistic of Gretton et al. 2012):
        1/(n(n-1)) sum_{i != j} kxx_ij + 1/(m(m-1)) sum_{i != j} kyy_ij - 2/(nm) sum_ij kxy_ij
    biased (V-statistic): the plain means of the three matrices, with the
    cross term again weighted by 2. The unbiased one has expectation exactly
    MMD^2 (0 when the two distributions are equal) and can be negative.
    """
    if unbiased:
        n, m = kxx.shape[0], kyy.shape[0]
        if n < 2 or m < 2:
            raise ValueError("the unbiased MMD needs at least two samples on each side")
        xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        xx, yy = kxx.mean(), kyy.mean()
    return xx + yy - 2.0 * kxy.mean()
