"""The mutual information gap (Chen et al. 2018, section 4.1)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from benchbed import hookimpl
from benchbed_plugins.metrics.disentanglement.factors import (FactorScore, Pool, entropies, histogram_discretize,
                                      mutual_info_matrix, varying)


def mig(codes: np.ndarray, classes: np.ndarray, sizes, bins: int = 20) -> dict[str, float]:
    """MIG and the normalised MI matrix I(z_d; v_k) / H(v_k), shape (D, K)."""
    factors = varying(sizes)
    mi = mutual_info_matrix(histogram_discretize(codes, bins), classes[:, factors])
    h = entropies(classes[:, factors])
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    gaps = (top[0] - second) / h
    return {"mig": float(gaps.mean()), "matrix": mi / h, "gaps": gaps, "factors": factors}


class MIG(FactorScore):
    """Mutual information gap (Chen et al. 2018, §4.1): per factor, the MI of its best latent minus the runner-up's, over its entropy.

        MIG = 1/K sum_k [ I(z_j(k); v_k) - max_{j != j(k)} I(z_j; v_k) ] / H(v_k),
        j(k) = argmax_j I(z_j; v_k)

    with plug-in estimates on the pool: each latent (posterior mean) cut into
    ``bins`` = 20 equal-width bins between its min and max
    (disentanglement_lib's discretisation, which replaces Chen et al.'s
    estimator on q(z|x)), factors taken by their classes. Factors that the
    dataset does not vary are left out. 1: every factor in one latent;
    0: none. Invariant to permuting latents and to affine maps of each.
    A factor with more values than ``bins`` cannot reach 1.

    Values: ``mig``, ``mig/<factor>``, ``n``.
    Params: pool, batch_size, bins.
    """

    score_name = "mig"

    class Params(FactorScore.Params):
        bins: int = Field(20, ge=2, description="equal-width bins per latent")

    def produces(self) -> list[str]:
        # Also mig/<factor> per factor, whose names come from the dataset: not declared.
        return ["mig", "n"]

    def score(self, pool: Pool, rng) -> dict[str, float]:
        out = mig(pool.codes, pool.classes, pool.sizes, self.params.bins)
        values = {"mig": out["mig"]}
        for k, gap in zip(out["factors"], out["gaps"]):
            values[f"mig/{pool.names[k]}"] = float(gap)
        return values


@hookimpl
def register_metrics(register):
    register("mig", MIG)
