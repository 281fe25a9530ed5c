"""Shared pieces of the disentanglement scores (no hooks, so not a plugin).

Conventions (disentanglement_lib's, Locatello et al. 2019): codes are the
posterior means of q(z|x); ground-truth factors come from the dataset's
``factors`` capability; scores read a pool of (code, factor) pairs drawn
from the test split with the run seed. Scores that need observations with a
factor held fixed (beta-VAE, FactorVAE) draw them from that pool: on a
factor grid a random subset of the grid keeps every factor value's share,
so "rows of the pool whose factor k has value v" sample the conditional
that disentanglement_lib samples by rendering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field

from benchbed.components import Factors, Metric, MetricResult, Params
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics.encoding import encode, evaluating, subset_indices

_POOL_SALT = 0x44495331  # which test points form the pool
_SCORE_SALT = 0x44495332  # the score's own draws


@dataclass
class Pool:
    """Codes (N, D) float64 and the factors of the same rows."""

    codes: np.ndarray
    classes: np.ndarray  # int64 (N, K)
    values: np.ndarray  # float64 (N, K)
    sizes: tuple[int, ...]
    names: tuple[str, ...]


def split_factors(ctx, metric: str) -> Factors:
    factors = ctx.dataset.factors("test")
    if factors is None:
        raise BenchbedError(f"metric {metric!r} needs ground-truth factors, but dataset "
                            f"{type(ctx.dataset).__name__} offers none")
    return factors


def code_pool(ctx, metric: str, size: int | None, batch_size: int) -> Pool:
    """Posterior means of ``size`` test points (all when None) and their factors,
    rows in random order (SAP and DCI fit on a leading share, test on the rest)."""
    factors = split_factors(ctx, metric)
    generator = ctx.generator(_POOL_SALT)
    idx = subset_indices(len(ctx.test), size, generator)
    idx = idx[torch.randperm(len(idx), generator=generator)]  # random order: scores split it
    with evaluating(ctx.model) as model:
        codes = encode(model, ctx.test.x[idx], ctx.device, batch_size).mean
    if not torch.isfinite(codes).all():
        raise BenchbedError(f"{metric}: the encoder produced non-finite codes; the run has probably diverged")
    return Pool(codes.double().numpy(), factors.classes[idx].numpy(),
                factors.values[idx].double().numpy(), tuple(factors.sizes), tuple(factors.names))


def score_rng(ctx) -> np.random.Generator:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator(_SCORE_SALT)))
    return np.random.default_rng(seed)


class FactorScore(Metric):
    """Base of the scores: encode a pool of test points, hand it to ``score``."""

    needs_factors = True
    score_name = "factor score"

    class Params(Params):
        pool: int | None = Field(10000, ge=2, description="test points scored (disentanglement_lib: "
                                 "10000); None: the whole test split")
        batch_size: int = Field(500, gt=0, description="inputs per encoder batch")

    def score(self, pool: Pool, rng: np.random.Generator) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []  # the scores draw nothing; the figures metric overrides this

    def evaluate(self, ctx) -> MetricResult:
        pool = code_pool(ctx, self.score_name, self.params.pool, self.params.batch_size)
        values = self.score(pool, score_rng(ctx))
        values["n"] = float(len(pool.codes))
        return MetricResult(values={k: float(v) for k, v in values.items()})


# ------------------------------------------------------------------ helpers


def varying(sizes) -> np.ndarray:
    """Indices of the factors with more than one value (a factor fixed by the
    dataset's stride carries no information and is left out)."""
    kept = np.array([k for k, n in enumerate(sizes) if n > 1], dtype=np.int64)
    if len(kept) == 0:
        raise BenchbedError("no factor varies in this data (every factor has one value); "
                            "the disentanglement scores need at least one that does")
    return kept


def same_value_rows(column: np.ndarray, anchors: np.ndarray, count: int,
                    rng: np.random.Generator) -> np.ndarray:
    """For each anchor row a, ``count`` rows drawn uniformly (with replacement)
    among the rows whose ``column`` value equals column[a]: shape (len(anchors), count)."""
    order = np.argsort(column, kind="stable")
    sorted_values = column[order]
    starts = np.searchsorted(sorted_values, column[anchors], side="left")
    ends = np.searchsorted(sorted_values, column[anchors], side="right")
    offsets = (rng.random((len(anchors), count)) * (ends - starts)[:, None]).astype(np.int64)
    return order[starts[:, None] + offsets]


def histogram_discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """Each column cut into ``bins`` equal-width bins between its min and max,
    ints 0 .. bins-1: numpy's histogram edges and ``digitize``, the
    discretisation of disentanglement_lib's ``_histogram_discretize``."""
    out = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, d], bins)
        out[:, d] = np.digitize(codes[:, d], edges[:-1]) - 1
    return out


def entropies(labels: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of each column of non-negative ints."""
    out = np.empty(labels.shape[1])
    for k in range(labels.shape[1]):
        p = np.bincount(labels[:, k]) / len(labels)
        p = p[p > 0]
        out[k] = -(p * np.log(p)).sum()
    return out


def mutual_info_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in I(a_i; b_j) in nats for every column pair, (A, B), from one
    bincount of all joint histograms:

        I = sum_{u,v} p(u,v) log( p(u,v) / (p(u) p(v)) )
    """
    n, na, nb = len(a), a.max() + 1, b.max() + 1
    A, B = a.shape[1], b.shape[1]
    pair = np.arange(A * B).reshape(A, B)
    flat = (pair[None] * na + a[:, :, None]) * nb + b[:, None, :]  # (N, A, B)
    joint = np.bincount(flat.ravel(), minlength=A * B * na * nb).reshape(A, B, na, nb) / n
    pa = joint.sum(axis=3, keepdims=True)
    pb = joint.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / (pa * pb)), 0.0)
    return terms.sum(axis=(2, 3))
