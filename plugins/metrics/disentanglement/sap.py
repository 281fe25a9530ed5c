"""The separated attribute predictability score (Kumar et al. 2018, section 3)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from benchbed import hookimpl
from benchbed_plugins.metrics.disentanglement.factors import FactorScore, Pool, varying


def sap_matrix_continuous(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """R^2 of the 1-D linear regression of each factor on each latent: the
    squared correlation, (D, K), 0 for a constant latent."""
    zc = codes - codes.mean(axis=0)
    vc = values - values.mean(axis=0)
    cov = zc.T @ vc / (len(codes) - 1)
    var_z = zc.var(axis=0, ddof=1)
    var_v = vc.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = cov ** 2 / (var_z[:, None] * var_v[None, :])
    return np.where((var_z[:, None] > 1e-12) & (var_v[None, :] > 0), r2, 0.0)


def sap_matrix_discrete(z_train, y_train, z_test, y_test) -> np.ndarray:
    """Test accuracy of a linear SVM (C = 0.01, balanced class weights)
    predicting each factor's class from each single latent, (D, K)."""
    from sklearn.svm import LinearSVC

    out = np.zeros((z_train.shape[1], y_train.shape[1]))
    for d in range(z_train.shape[1]):
        for k in range(y_train.shape[1]):
            model = LinearSVC(C=0.01, class_weight="balanced")
            model.fit(z_train[:, d:d + 1], y_train[:, k])
            out[d, k] = np.mean(model.predict(z_test[:, d:d + 1]) == y_test[:, k])
    return out


def sap_from_matrix(matrix: np.ndarray) -> float:
    """Mean over factors of the gap between the two highest scores over latents."""
    top = np.sort(matrix, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    return float((top[0] - second).mean())


def sap(codes: np.ndarray, classes: np.ndarray, values: np.ndarray, sizes,
        factor_type: str = "discrete", train_fraction: float = 2 / 3) -> dict:
    factors = varying(sizes)
    if factor_type == "continuous":
        matrix = sap_matrix_continuous(codes, values[:, factors])
    else:
        cut = int(round(len(codes) * train_fraction))
        matrix = sap_matrix_discrete(codes[:cut], classes[:cut][:, factors],
                                     codes[cut:], classes[cut:][:, factors])
    return {"sap": sap_from_matrix(matrix), "matrix": matrix}


class SAP(FactorScore):
    """SAP (Kumar et al. 2018, §3): mean over factors of the gap between the two latents that best predict it alone.

        S_dk = score of predicting factor k from latent d alone,
        SAP  = 1/K sum_k ( S_(1)k - S_(2)k )   (best minus second best over d)

    ``factor_type: discrete`` (default, as disentanglement_lib on dSprites):
    S_dk = test accuracy of a linear SVM (scikit-learn LinearSVC, C = 0.01,
    balanced class weights) fitted on the first ``train_fraction`` of the
    pool; ``continuous``: S_dk = R^2 of the linear regression of v_k on z_d,
    i.e. the squared correlation (closed form). Discrete scores stay above
    chance for every latent, so the discrete SAP's maximum is below 1
    (1 - chance for a factor read by a single latent); the continuous one
    reaches 1. Invariant to permuting latents and (continuous) to affine
    maps of each.

    Values: ``sap``, ``n``.
    Params: pool, batch_size, factor_type, train_fraction.
    """

    score_name = "sap"

    class Params(FactorScore.Params):
        factor_type: Literal["discrete", "continuous"] = Field(
            "discrete", description="discrete: LinearSVC accuracy; continuous: R^2")
        train_fraction: float = Field(2 / 3, gt=0, lt=1, description="share of the pool the "
                                      "discrete classifiers are fitted on")

    def produces(self) -> list[str]:
        return ["sap", "n"]

    def score(self, pool: Pool, rng) -> dict[str, float]:
        p = self.params
        out = sap(pool.codes, pool.classes, pool.values, pool.sizes, p.factor_type, p.train_fraction)
        return {"sap": out["sap"]}


@hookimpl
def register_metrics(register):
    register("sap", SAP)
