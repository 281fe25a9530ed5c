"""InfoVAE 4.2.1 (2): the class distribution of ancestral samples, scored by a
pretrained digit classifier, l_ce(c, c_hat) = -c^T (log c_hat - log c)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from benchbed import testing
from benchbed.plugin_api.components import Split
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics import class_ce, classifier
from conftest import digits_ctx

pytestmark = [pytest.mark.usefixtures("cheap_classifier_recipe"), pytest.mark.slow]  # trains a classifier
N_TRAIN, N_TEST = 3000, 1000  # the sizes of conftest's ``digits``


def naive_l_ce(c: list[float], c_hat: list[float], eps: float) -> float:
    """-sum_k c_k log(c_hat'_k / c_k), c_hat' = (c_hat + eps) / (1 + K eps), term by term."""
    k = len(c)
    total = 0.0
    for c_k, h_k in zip(c, c_hat):
        if c_k > 0:
            total -= c_k * math.log(((h_k + eps) / (1 + k * eps)) / c_k)
    return total


# ------------------------------------------------------------- the formula


def test_l_ce_is_the_kl_between_true_and_smoothed_sample_class_distributions():
    c = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    c_hat = torch.tensor([0.25, 0.25, 0.5, 0.0], dtype=torch.float64)
    eps = 1e-3
    expected = naive_l_ce(c.tolist(), c_hat.tolist(), eps)
    assert class_ce.class_cross_entropy(c, c_hat, eps) == pytest.approx(expected, rel=1e-12)


def test_l_ce_vanishes_when_samples_have_the_data_class_balance():
    c = torch.tensor([0.05, 0.15, 0.3, 0.5])
    value = class_ce.class_cross_entropy(c, c.clone(), eps=1e-4)
    assert abs(value) < 1e-7  # the epsilon smoothing changes c_hat only at second order


def test_a_missing_mode_costs_minus_c_log_eps():
    c = torch.full((10,), 0.1, dtype=torch.float64)
    c_hat = torch.tensor([1 / 9] * 9 + [0.0], dtype=torch.float64)  # class 9 never sampled
    eps = 1e-4
    expected = (-0.9 * math.log(((1 / 9 + eps) / (1 + 10 * eps)) / 0.1)
                - 0.1 * math.log((eps / (1 + 10 * eps)) / 0.1))
    assert class_ce.class_cross_entropy(c, c_hat, eps) == pytest.approx(expected, rel=1e-12)


def test_argmax_counts_labels_and_softmax_averages_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [0.5, 0.1, 0.4], [-1.0, -2.0, 0.0]])
    counts = class_ce.predicted_class_distribution(logits, "argmax")
    assert counts.tolist() == pytest.approx([2 / 4, 1 / 4, 1 / 4])
    soft = class_ce.predicted_class_distribution(logits, "softmax")
    rows = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits.tolist()]
    assert soft.tolist() == pytest.approx([sum(col) / 4 for col in zip(*rows)], rel=1e-12)


def test_params_are_validated():
    with pytest.raises(ValueError):
        class_ce.ClassCE(n_samples=0)
    with pytest.raises(ValueError):
        class_ce.ClassCE(eps=0.0)
    with pytest.raises(ValueError):
        class_ce.ClassCE(assignment="mode")


# ----------------------------------------------------- the whole pipeline


def test_replaying_the_data_gives_near_zero_cross_entropy(digits, shared_cache):
    train, test = digits
    metric = class_ce.ClassCE(n_samples=N_TRAIN, batch_size=700)
    result = metric.evaluate(digits_ctx(train, test, shared_cache, testing.ReplayModel(train.x)))
    # The train images themselves: only the classifier's (few, roughly balanced)
    # mistakes separate c_hat from c.
    assert 0 <= result.values["class_ce"] < 0.002
    assert result.values["classifier_accuracy"] > 90.0
    # The test images: their class balance also differs a little from the train split's.
    metric = class_ce.ClassCE(n_samples=N_TEST, batch_size=300)
    on_test = metric.evaluate(digits_ctx(train, test, shared_cache, testing.ReplayModel(test.x)))
    assert 0 <= on_test.values["class_ce"] < 0.01
    noise = torch.rand(N_TEST, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    on_noise = metric.evaluate(digits_ctx(train, test, shared_cache, testing.ReplayModel(noise)))
    assert on_noise.values["class_ce"] > 100 * on_test.values["class_ce"]


def test_samples_of_one_class_give_the_closed_form(digits, shared_cache):
    train, test = digits
    model, _ = classifier.get_classifier(digits_ctx(train, test, shared_cache))
    zeros = train.x[train.y == 0]
    predicted = model(zeros).argmax(1)
    assert (predicted == 0).float().mean() > 0.95  # the classifier knows its zeros
    only_zeros = zeros[predicted == 0]  # every sample is classified as a 0

    eps = 1e-4
    metric = class_ce.ClassCE(n_samples=500, batch_size=128, eps=eps)
    value = metric.evaluate(digits_ctx(train, test, shared_cache, testing.ReplayModel(only_zeros))).values["class_ce"]

    counts = np.bincount(train.y.numpy(), minlength=10)
    c = (counts / counts.sum()).tolist()
    assert value == pytest.approx(naive_l_ce(c, [1.0] + [0.0] * 9, eps), rel=1e-9)
    # About -0.9 log(eps / 0.1): a huge penalty for nine missing modes.
    assert value > 5


def test_classifier_is_trained_once_and_cached_as_a_state_dict(digits, shared_cache):
    train, test = digits
    ctx = digits_ctx(train, test, shared_cache)
    model, accuracy = classifier.get_classifier(ctx)
    weights, meta_path = classifier.classifier_paths(ctx)
    meta = json.loads(meta_path.read_text())
    assert weights.name.startswith("mnist-subset-") and weights.parent.name == "classifiers"
    assert meta["accuracy"] == accuracy and meta["train_size"] == N_TRAIN

    # The accuracy in the JSON is the test accuracy, recomputed here by hand.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    fresh = classifier.DigitClassifier(1, 28, 28, 10)
    fresh.load_state_dict(state)
    with torch.no_grad():
        hits = (fresh(test.x).argmax(1) == test.y).sum().item()
    assert accuracy == pytest.approx(100.0 * hits / len(test), abs=1e-9)

    # A new process would find the files: drop the in-process memo and load again.
    classifier._LOADED.clear()
    stamp = weights.stat().st_mtime_ns
    started = time.perf_counter()
    _, again = classifier.get_classifier(ctx)
    assert again == accuracy and weights.stat().st_mtime_ns == stamp
    assert time.perf_counter() - started < 2.0  # loaded, not retrained


def test_classifier_training_works_under_no_grad_and_leaves_the_global_rng_alone(digits):
    # The runner evaluates metrics inside torch.no_grad(); training must still learn.
    train, test = digits
    small = Split(train.x[:256], train.y[:256])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    untrained = classifier.DigitClassifier(1, 28, 28, 10)
    torch.set_rng_state(before)
    with torch.no_grad():
        recipe = classifier.ClassifierRecipe(epochs=10, min_steps=0, batch_size=64)
        model = classifier.train_classifier(small, 10, recipe)
    assert torch.equal(torch.get_rng_state(), before)
    with torch.no_grad():
        loss = lambda net: torch.nn.functional.cross_entropy(net(small.x), small.y).item()  # noqa: E731
        assert loss(model) < 0.5 * loss(untrained)


def test_an_unlabelled_dataset_is_a_clear_error(digits, tmp_path):
    train, test = digits
    unlabelled = Split(train.x[:100], None)
    ctx = digits_ctx(unlabelled, Split(test.x[:10], None), tmp_path, testing.ReplayModel(train.x), num_classes=None)
    with pytest.raises(BenchbedError, match="labels"):
        class_ce.ClassCE(n_samples=10).evaluate(ctx)
