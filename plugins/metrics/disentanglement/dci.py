"""Disentanglement, completeness and informativeness (Eastwood & Williams 2018)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from benchbed import hookimpl
from benchbed_plugins.metrics.disentanglement.factors import FactorScore, Pool, varying


def importance_matrix(z_train, y_train, z_test, y_test, model: str = "random_forest",
                      trees: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R (D, K): the importance of latent d in predicting factor k (each column
    sums to 1), with the train and test accuracy per factor."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    D, K = z_train.shape[1], y_train.shape[1]
    importance = np.zeros((D, K))
    train_acc, test_acc = np.zeros(K), np.zeros(K)
    for k in range(K):
        if model == "random_forest":
            clf = RandomForestClassifier(n_estimators=trees, max_features=None, n_jobs=1,
                                         random_state=seed)
        else:
            clf = GradientBoostingClassifier(random_state=seed)
        clf.fit(z_train, y_train[:, k])
        importance[:, k] = np.abs(clf.feature_importances_)
        train_acc[k] = clf.score(z_train, y_train[:, k])
        test_acc[k] = clf.score(z_test, y_test[:, k])
    return importance, train_acc, test_acc


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy in the given base of distributions along ``axis`` (normalised there)."""
    p = p / np.maximum(p.sum(axis=axis, keepdims=True), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis) / np.log(base)


def _weighted_purity(importance: np.ndarray, axis: int) -> float:
    """sum over the rows (axis=1) or columns (axis=0) of R of their share of R times
    1 - the entropy of their normalised entries (base: their count)."""
    base = importance.shape[axis]
    if base < 2 or importance.sum() == 0:
        return 0.0
    purity = 1.0 - _entropy(importance, base, axis=axis)
    share = importance.sum(axis=axis) / importance.sum()
    return float((share * purity).sum())


def disentanglement(importance: np.ndarray) -> float:
    """sum_d rho_d (1 - H_K(P_d.)), rho_d = sum_k R_dk / sum R."""
    return _weighted_purity(importance, axis=1)


def completeness(importance: np.ndarray) -> float:
    """sum_k w_k (1 - H_D(P~_.k)), w_k = sum_d R_dk / sum R."""
    return _weighted_purity(importance, axis=0)


def dci(codes: np.ndarray, classes: np.ndarray, sizes, model: str = "random_forest",
        trees: int = 10, train_fraction: float = 2 / 3, seed: int = 0) -> dict:
    factors = varying(sizes)
    cut = int(round(len(codes) * train_fraction))
    y = classes[:, factors]
    importance, train_acc, test_acc = importance_matrix(codes[:cut], y[:cut], codes[cut:], y[cut:],
                                                        model, trees, seed)
    return {"disentanglement": disentanglement(importance), "completeness": completeness(importance),
            "informativeness": float(test_acc.mean()),
            "informativeness_train": float(train_acc.mean()), "importance": importance}


class DCI(FactorScore):
    """DCI (Eastwood & Williams 2018): disentanglement, completeness and informativeness of the codes from a feature-importance matrix.

    For each factor k a classifier predicts v_k from all latents (fitted on
    the first ``train_fraction`` of the pool); R_dk is latent d's importance
    for factor k (each column sums to 1). With P_dk = R_dk / sum_k R_dk and
    P~_dk = R_dk / sum_d R_dk:

        D = sum_d rho_d (1 - H_K(P_d.)),   rho_d = sum_k R_dk / sum R
        C = sum_k w_k (1 - H_D(P~_.k)),    w_k   = sum_d R_dk / sum R
        I = mean_k test accuracy of the classifier for k

    (entropies in base K and D; the weights are disentanglement_lib's).
    ``model: random_forest`` (default): 10 trees, every latent considered at
    each split (scikit-learn RandomForestClassifier, impurity importance);
    Eastwood & Williams used random forests, and on 10k codes this takes a
    few seconds where disentanglement_lib's ``gradient_boosting``
    (GradientBoostingClassifier, kept as an option) takes minutes
    (benchmarks/disentanglement.py). Informativeness is an accuracy, as in
    disentanglement_lib (E&W report a regression error).

    Values: ``disentanglement``, ``completeness``, ``informativeness``,
    ``informativeness_train``, ``n``.
    Params: pool, batch_size, model, trees, train_fraction.
    """

    score_name = "dci"

    class Params(FactorScore.Params):
        model: Literal["random_forest", "gradient_boosting"] = Field(
            "random_forest", description="the importance model (gradient_boosting: disentanglement_lib's, slow)")
        trees: PositiveInt = Field(10, description="random-forest trees")
        train_fraction: float = Field(2 / 3, gt=0, lt=1, description="share of the pool the "
                                      "classifiers are fitted on")

    def produces(self) -> list[str]:
        return ["disentanglement", "completeness", "informativeness", "informativeness_train", "n"]

    def score(self, pool: Pool, rng) -> dict[str, float]:
        p = self.params
        out = dci(pool.codes, pool.classes, pool.sizes, p.model, p.trees, p.train_fraction,
                  seed=int(rng.integers(2**31 - 1)))
        return {k: v for k, v in out.items() if k != "importance"}


@hookimpl
def register_metrics(register):
    register("dci", DCI)
