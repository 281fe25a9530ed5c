"""The FactorVAE disentanglement score (Kim & Mnih 2018, section 4)."""

from __future__ import annotations

import numpy as np
from pydantic import Field, PositiveFloat

from benchbed import hookimpl
from benchbed_plugins.metrics.disentanglement.factors import FactorScore, Pool, same_value_rows, varying


def factorvae_votes(codes: np.ndarray, classes: np.ndarray, factors: np.ndarray, scale: np.ndarray,
                    active: np.ndarray, count: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """(D, K) counts of (argmin latent, fixed factor) over ``count`` votes."""
    labels = factors[rng.integers(len(factors), size=count)]
    anchors = rng.integers(len(codes), size=count)
    rows = np.empty((count, batch), dtype=np.int64)
    for k in np.unique(labels):
        pick = labels == k
        rows[pick] = same_value_rows(classes[:, k], anchors[pick], batch, rng)
    variances = np.var(codes[rows] / scale, axis=1, ddof=1)  # (count, D)
    variances[:, ~active] = np.inf
    argmin = variances.argmin(axis=1)
    votes = np.zeros((codes.shape[1], classes.shape[1]), dtype=np.int64)
    np.add.at(votes, (argmin, labels), 1)
    return votes


def factorvae_score(codes: np.ndarray, classes: np.ndarray, sizes, rng: np.random.Generator,
                    batch: int = 64, num_train: int = 10000, num_eval: int = 5000,
                    num_variance_estimate: int = 10000, prune_threshold: float = 0.05) -> dict[str, float]:
    """Majority-vote accuracy of argmin_d Var(z_d / s_d) -> k, on train and eval votes."""
    sample = codes[rng.integers(len(codes), size=num_variance_estimate)]
    scale = np.sqrt(np.var(sample, axis=0, ddof=1))
    active = scale >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "active_dims": 0.0}
    scale = np.where(active, scale, 1.0)
    factors = varying(sizes)
    train = factorvae_votes(codes, classes, factors, scale, active, num_train, batch, rng)
    evals = factorvae_votes(codes, classes, factors, scale, active, num_eval, batch, rng)
    classifier = train.argmax(axis=1)  # each latent votes for its most frequent factor
    dims = np.arange(len(classifier))
    return {"train_accuracy": train[dims, classifier].sum() / train.sum(),
            "eval_accuracy": evals[dims, classifier].sum() / evals.sum(),
            "active_dims": float(active.sum())}


class FactorVAEScore(FactorScore):
    """FactorVAE score (Kim & Mnih 2018, §4): majority-vote accuracy of the latent of least variance when one factor is fixed.

    Codes are divided by their standard deviation s_d over the pool
    (``num_variance_estimate`` draws); latents with s_d < 0.05 are collapsed
    and left out (disentanglement_lib's pruning). One vote: draw a factor k
    uniformly (among those that vary), fix its value, draw L = 64 codes
    with that value (the others random) and take

        d* = argmin_d Var_l( z_l,d / s_d ),   vote (d*, k).

    The classifier maps each latent d to the factor it voted for most often;
    ``eval_accuracy`` is its accuracy on ``num_eval`` fresh votes (chance =
    1 / number of factors). Invariant to rescaling and permuting latents.
    10000 / 5000 votes as disentanglement_lib.

    Values: ``eval_accuracy``, ``train_accuracy``, ``active_dims``, ``n``.
    Params: pool, batch_size, batch, num_train, num_eval, num_variance_estimate, prune_threshold.
    """

    score_name = "factorvae_score"

    class Params(FactorScore.Params):
        batch: int = Field(64, gt=1, description="codes per vote (L)")
        num_train: int = Field(10000, gt=0, description="votes building the classifier")
        num_eval: int = Field(5000, gt=0, description="votes scored")
        num_variance_estimate: int = Field(10000, gt=1, description="draws for the global scale s_d")
        prune_threshold: PositiveFloat = Field(0.05, description="latents with s_d below are collapsed")

    def produces(self) -> list[str]:
        return ["train_accuracy", "eval_accuracy", "active_dims", "n"]

    def score(self, pool: Pool, rng) -> dict[str, float]:
        p = self.params
        return factorvae_score(pool.codes, pool.classes, pool.sizes, rng, p.batch, p.num_train,
                               p.num_eval, p.num_variance_estimate, p.prune_threshold)


@hookimpl
def register_metrics(register):
    register("factorvae_score", FactorVAEScore)
