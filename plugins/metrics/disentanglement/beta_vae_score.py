"""The beta-VAE disentanglement score (Higgins et al. 2017, section 3 and Appendix A.4)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from benchbed import hookimpl
from benchbed_plugins.metrics.disentanglement.factors import FactorScore, Pool, same_value_rows, varying


def beta_vae_features(codes: np.ndarray, classes: np.ndarray, sizes, count: int, pairs: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training points: a factor k drawn uniformly, ``pairs`` pairs
    (z_a, z_b) sharing k's value, feature mean_l |z_a,l - z_b,l|, label k."""
    factors = varying(sizes)
    labels = factors[rng.integers(len(factors), size=count)]
    anchors = rng.integers(len(codes), size=(count, pairs))
    partners = np.empty_like(anchors)
    for k in np.unique(labels):
        rows = labels == k
        partners[rows] = same_value_rows(classes[:, k], anchors[rows].ravel(), 1, rng).reshape(-1, pairs)
    features = np.abs(codes[anchors] - codes[partners]).mean(axis=1)
    return features, labels


def beta_vae_score(codes: np.ndarray, classes: np.ndarray, sizes, rng: np.random.Generator,
                   pairs: int = 64, num_train: int = 10000, num_eval: int = 5000) -> dict[str, float]:
    """Train and eval accuracy of a linear classifier predicting the fixed factor."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = beta_vae_features(codes, classes, sizes, num_train, pairs, rng)
    x_eval, y_eval = beta_vae_features(codes, classes, sizes, num_eval, pairs, rng)
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return {"train_accuracy": float(model.score(x_train, y_train)),
            "eval_accuracy": float(model.score(x_eval, y_eval))}


class BetaVAEScore(FactorScore):
    """beta-VAE score (Higgins et al. 2017, §3, App. A.4): accuracy of a linear classifier telling which factor a batch of pairs shares.

    One point: draw a factor k uniformly (among those that vary); draw L
    pairs (x_a, x_b) with v_k(x_a) = v_k(x_b), the other factors random;
    with codes z = posterior mean,

        feature = 1/L sum_l |z(x_a,l) - z(x_b,l)|,   label = k.

    A linear classifier (scikit-learn LogisticRegression, as
    disentanglement_lib) is fitted on ``num_train`` points;
    ``eval_accuracy`` on ``num_eval`` fresh points is the score (chance =
    1 / number of factors). L = 64, 10000 / 5000 points: disentanglement_lib's
    defaults. Pairs are drawn from the pool of test codes (see
    ``benchbed_plugins.metrics.disentanglement.factors``), not rendered afresh.

    Values: ``eval_accuracy``, ``train_accuracy``, ``n``.
    Params: pool, batch_size, pairs, num_train, num_eval.
    """

    score_name = "beta_vae_score"

    class Params(FactorScore.Params):
        pairs: int = Field(64, gt=0, description="pairs averaged per point (L)")
        num_train: int = Field(10000, gt=1, description="classifier training points")
        num_eval: int = Field(5000, gt=0, description="evaluation points")

    def produces(self) -> list[str]:
        return ["train_accuracy", "eval_accuracy", "n"]

    def score(self, pool: Pool, rng) -> dict[str, float]:
        p = self.params
        return beta_vae_score(pool.codes, pool.classes, pool.sizes, rng, p.pairs, p.num_train, p.num_eval)


@hookimpl
def register_metrics(register):
    register("beta_vae_score", BetaVAEScore)
