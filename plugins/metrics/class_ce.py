"""``class_ce``: does ancestral sampling reproduce the dataset's class balance?"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed_plugins.metrics.classifier import (full_train_split, get_classifier, num_classes_of,
                                         predict_logits)

SAMPLE_SALT = 0xCE  # keeps these draws apart from other metrics' draws


def class_frequencies(labels: Tensor, num_classes: int) -> Tensor:
    """c: the fraction of each class among ``labels`` (float64)."""
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes).double()
    return counts / counts.sum()


def predicted_class_distribution(logits: Tensor, assignment: str = "argmax") -> Tensor:
    """c_hat from classifier logits: argmax label counts, or the mean softmax."""
    if assignment == "argmax":
        return class_frequencies(logits.argmax(1), logits.shape[1])
    return torch.softmax(logits.double(), dim=1).mean(0)


def class_cross_entropy(c: Tensor, c_hat: Tensor, eps: float) -> float:
    """l_ce(c, c_hat) = -c^T (log c_hat' - log c), c_hat' = (c_hat + eps) / (1 + K eps).

    The epsilon keeps a class the samples never show finite (it then costs
    -c_k log(eps / (1 + K eps))); renormalising keeps c_hat' a distribution, so
    l_ce = KL(c || c_hat') >= 0. Classes absent from c add nothing (0 log 0 = 0).
    """
    c, c_hat = c.double(), c_hat.double()
    smoothed = (c_hat + eps) / (1.0 + c_hat.numel() * eps)
    present = c > 0
    return float(-(c[present] * (smoothed[present].log() - c[present].log())).sum())


class ClassCE(Metric):
    """Cross-entropy between the true class distribution and that of ancestral samples.

    InfoVAE section 4.2.1 (2): if p(z) p(x|z) has the data marginal, a
    pretrained classifier should find each class among its samples as often as
    in the data. With c the class frequencies of the dataset's whole train split and c_hat
    the class distribution the classifier assigns to ``n_samples`` draws
    z ~ p(z), x = E[x|z] (``model.sample_prior``):

        l_ce(c, c_hat) = -sum_k c_k (log c_hat'_k - log c_k),
        c_hat' = (c_hat + eps) / (1 + K eps)

    (that is KL(c || c_hat'); 0 when the balance is exact, sensitive to
    missing or over-represented modes). ``assignment: argmax`` counts the
    classifier's predicted labels, which is the "label counts" the paper
    describes; ``softmax`` averages its class probabilities instead.

    The classifier (``benchbed_plugins.metrics.classifier``) is a small CNN trained
    once per dataset on its train split and cached in the store's cache; its
    test accuracy is reported as ``classifier_accuracy`` (percent).

    Values: ``class_ce`` (nats), ``classifier_accuracy`` (percent).
    Params: n_samples, batch_size, assignment, eps.
    """

    class Params(Params):
        n_samples: int = Field(10000, gt=0, description="ancestral samples to classify "
                               "(10000, the size of the MNIST test set)")
        batch_size: int = Field(1000, gt=0, description="samples drawn and classified at once")
        assignment: Literal["argmax", "softmax"] = Field(
            "argmax", description="c_hat from predicted-label counts (argmax) or mean class "
                                  "probabilities (softmax)")
        eps: float = Field(1e-4, gt=0, lt=1, description="added to every c_hat entry (then "
                           "renormalised) so a missing class costs -c_k log eps, not infinity")

    def produces(self) -> list[str]:
        return ["class_ce", "classifier_accuracy"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        classifier, accuracy = get_classifier(ctx)
        train = full_train_split(ctx)
        c = class_frequencies(train.y, num_classes_of(ctx, train))
        logits = self.sample_logits(ctx, classifier)
        c_hat = predicted_class_distribution(logits, self.params.assignment)
        value = class_cross_entropy(c, c_hat, self.params.eps)
        return MetricResult(values={"class_ce": value, "classifier_accuracy": accuracy})

    def sample_logits(self, ctx, classifier) -> Tensor:
        """Classifier logits for ``n_samples`` ancestral samples, drawn in batches."""
        generator = ctx.generator(SAMPLE_SALT)
        chunks, left = [], self.params.n_samples
        while left > 0:
            n = min(self.params.batch_size, left)
            samples = ctx.model.sample_prior(n, generator=generator)
            chunks.append(predict_logits(classifier, samples, batch_size=n))
            left -= n
        return torch.cat(chunks)


@hookimpl
def register_metrics(register):
    register("class_ce", ClassCE)
