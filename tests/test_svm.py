"""Semi-supervised SVM accuracy (InfoVAE 4.2.1 (4), VIMAE Table 1) and the
reconstruction error under corruption (VIMAE Fig. 2), which shares the svm's
clean/corrupted conditions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from benchbed import testing
from benchbed.plugin_api.components import Corruption, Split
from benchbed.distributions import DeterministicPosterior
from benchbed.errors import BenchbedError
from benchbed.run.worker import _numbers
from benchbed_plugins.metrics import recon, svm
from benchbed_plugins.metrics.encoding import balanced_label_indices


# ------------------------------------------------------------------ fixtures


class FlatCodes(testing.FlatEncoder):
    """The code is the flattened image, as the mean of a wide Gaussian (std e^2: a
    sample is noise, so the svm must use the mean); remembers every input it saw."""

    def __init__(self, dim):
        super().__init__(dim, logvar=4.0)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        return super().forward(x)


class RandomCodes(FlatCodes):
    """Features that carry nothing about x."""

    def forward(self, x):
        super().forward(x)
        return DeterministicPosterior(torch.randn(x.shape[0], 16, generator=self.gen))

    gen = torch.Generator().manual_seed(0)


class UniformNoise(Corruption):
    """Replaces every pixel by U(0, 1) noise from the given generator."""

    def __call__(self, x, generator):
        return torch.rand(x.shape, generator=generator)


class Reversed(Corruption):
    """Reverses the pixel order: nothing is lost, but every feature moves."""

    def __call__(self, x, generator):
        return x.flip(-1).flip(-2)


class Grey(Corruption):
    def __call__(self, x, generator):
        return torch.full_like(x, 0.5)


def digits(train_size=1200):
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(data.target, dtype=torch.int64)
    return Split(x[:train_size], y[:train_size]), Split(x[train_size:], y[train_size:])


def context(encoder, train, test, decoder=None, corruptions=None, seed=0, tmp_path="."):
    model = testing.model(encoder, decoder, shape=tuple(train.x.shape[1:]))
    return testing.eval_context(model, train, test, run_dir=tmp_path, seed=seed, corruptions=corruptions)


# ---------------------------------------------------------------- labelling


def test_labelled_examples_are_class_balanced_and_distinct():
    y = torch.arange(10).repeat_interleave(40)[torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    idx = balanced_label_indices(y, 100, torch.Generator().manual_seed(1))
    assert len(set(idx.tolist())) == 100
    assert np.bincount(y[idx].numpy()).tolist() == [10] * 10
    # a remainder goes one each to the lowest class ids
    idx = balanced_label_indices(y, 103, torch.Generator().manual_seed(1))
    assert np.bincount(y[idx].numpy()).tolist() == [11, 11, 11] + [10] * 7


def test_asking_for_more_labels_than_a_class_holds_is_an_error():
    y = torch.tensor([0] * 50 + [1] * 3)
    with pytest.raises(BenchbedError, match="class 1 has only 3"):
        balanced_label_indices(y, 20, torch.Generator().manual_seed(0))


def test_labels_come_only_from_train_and_the_full_test_set_is_scored(tmp_path):
    # every image carries its id in one pixel: train ids are positive, test ids negative
    g = torch.Generator().manual_seed(2)
    def split(n, sign):
        x = torch.rand(n, 1, 2, 2, generator=g)
        x[:, 0, 0, 0] = sign * torch.arange(1, n + 1, dtype=torch.float32)
        return Split(x, torch.arange(n) % 4)
    train, test = split(200, 1), split(90, -1)
    encoder = FlatCodes(4)
    values = svm.SemiSupervisedSVM(labels=40, cv_folds=2, batch_size=32).evaluate(
        context(encoder, train, test, tmp_path=tmp_path)).values
    ids = torch.cat(encoder.seen)[:, 0, 0, 0]
    train_ids, test_ids = ids[ids > 0].long(), ids[ids < 0].long()
    assert len(train_ids) == 40 and len(set(train_ids.tolist())) == 40
    assert np.bincount(train.y[train_ids - 1].numpy()).tolist() == [10, 10, 10, 10]
    assert sorted((-test_ids).tolist()) == list(range(1, 91))  # every test point, once
    assert values["labels"] == 40


# --------------------------------------------------------------- accuracy


def test_svm_on_features_without_information_is_at_chance(tmp_path):
    train, test = digits()
    values = svm.SemiSupervisedSVM(labels=500).evaluate(
        context(RandomCodes(64), train, test, tmp_path=tmp_path)).values
    assert 5.0 < values["accuracy/clean"] < 16.0
    assert values["error/clean"] == pytest.approx(100 - values["accuracy/clean"])


def test_svm_on_informative_features_is_accurate_and_uses_the_posterior_mean(tmp_path):
    train, test = digits()
    values = svm.SemiSupervisedSVM(labels=500).evaluate(
        context(FlatCodes(64), train, test, tmp_path=tmp_path)).values
    # a sample with std e^2 per pixel would be near chance; the mean gives digits
    assert values["accuracy/clean"] > 90.0
    assert values["c"] in (0.1, 1.0, 10.0, 100.0)


def test_a_corruption_condition_changes_what_the_encoder_sees_and_is_reproducible(tmp_path):
    train, test = digits()
    metric = svm.SemiSupervisedSVM(labels=500, conditions=["clean", "noise"])
    encoder = FlatCodes(64)
    ctx = context(encoder, train, test, corruptions={"noise": UniformNoise()}, tmp_path=tmp_path)
    values = metric.evaluate(ctx).values
    seen = torch.cat(encoder.seen)
    # 500 labelled + clean test + corrupted test inputs; the last block is not the test set
    assert len(seen) == 500 + 2 * len(test)
    assert torch.equal(seen[500:500 + len(test)], test.x)
    assert not torch.allclose(seen[500 + len(test):], test.x)
    assert values["accuracy/clean"] > 90.0
    assert values["accuracy/noise"] < 25.0
    assert values["error/noise"] == pytest.approx(100 - values["accuracy/noise"])
    again = metric.evaluate(context(FlatCodes(64), train, test, corruptions={"noise": UniformNoise()},
                                    tmp_path=tmp_path)).values
    assert again == values


def test_refitting_under_a_corruption_recovers_what_a_clean_fit_cannot_transfer(tmp_path):
    # VIMAE §5.2 read literally: the whole semi-supervised fit runs on corrupted codes.
    # A corruption that loses nothing but moves every pixel defeats a clean-fitted SVM;
    # refitted on reversed labelled images it classifies reversed test images as well as clean ones.
    train, test = digits()
    corruptions = {"reversed": Reversed()}
    clean_fit = svm.SemiSupervisedSVM(labels=500, conditions=["clean", "reversed"]).evaluate(
        context(FlatCodes(64), train, test, corruptions=corruptions, tmp_path=tmp_path)).values
    encoder = FlatCodes(64)
    refit = svm.RefittedSVM(labels=500, conditions=["clean", "reversed"]).evaluate(
        context(encoder, train, test, corruptions=corruptions, tmp_path=tmp_path)).values
    assert clean_fit["accuracy/reversed"] < 50.0
    assert refit["accuracy/reversed"] > 90.0
    assert refit["accuracy/clean"] == clean_fit["accuracy/clean"]  # the clean fit is the same fit
    # labelled clean, clean test, labelled reversed, reversed test: four encoder passes
    seen = torch.cat(encoder.seen)
    n = len(test)
    assert len(seen) == 500 + n + 500 + n
    assert torch.equal(seen[500 + n:1000 + n], seen[:500].flip(-1).flip(-2))


def test_svm_fits_on_clean_codes_even_when_the_conditions_start_with_a_corruption(tmp_path):
    train, test = digits()
    encoder = FlatCodes(64)
    values = svm.SemiSupervisedSVM(labels=500, conditions=["reversed", "clean"]).evaluate(
        context(encoder, train, test, corruptions={"reversed": Reversed()}, tmp_path=tmp_path)).values
    labelled = encoder.seen[0]
    assert len(labelled) == 500 and (labelled[:, None] == train.x[None]).flatten(2).all(-1).any(-1).all()
    assert values["accuracy/reversed"] < 50.0 < values["accuracy/clean"]


def test_a_refitted_svm_draws_the_labelled_images_noise_apart_from_the_test_noise(tmp_path):
    train, test = digits()
    same = Split(test.x[:500], test.y[:500])  # the labelled pool and the test set hold the same images
    encoder = FlatCodes(64)
    svm.RefittedSVM(labels=100, conditions=["noise"], cv_folds=3).evaluate(
        context(encoder, same, same, corruptions={"noise": UniformNoise()}, tmp_path=tmp_path))
    labelled, tested = torch.cat(encoder.seen[:1]), torch.cat(encoder.seen[1:])
    assert len(labelled) == 100 and len(tested) == 500
    # no labelled input equals any test input: another draw of the noise
    assert torch.cdist(labelled.flatten(1), tested.flatten(1)).min() > 0


def test_unknown_condition_is_refused_with_the_known_names(tmp_path):
    train, test = digits()
    metric = svm.SemiSupervisedSVM(labels=100, conditions=["clean", "nosie"])
    with pytest.raises(BenchbedError, match="did you mean 'noise'"):
        metric.evaluate(context(FlatCodes(64), train, test, corruptions={"noise": UniformNoise()},
                                tmp_path=tmp_path))


def test_svm_subset_of_test_points(tmp_path):
    train, test = digits()
    encoder = FlatCodes(64)
    svm.SemiSupervisedSVM(labels=100, test_subset=50, cv_folds=3).evaluate(
        context(encoder, train, test, tmp_path=tmp_path))
    assert sum(len(x) for x in encoder.seen) == 100 + 50


# ------------------------------------------------------------ reconstruction


def test_perfect_reconstruction_has_zero_error_clean_and_known_error_when_greyed(tmp_path):
    _, test = digits()
    ctx = context(FlatCodes(64), test, test, corruptions={"grey": Grey()}, tmp_path=tmp_path)
    values = recon.Reconstruction(conditions=["clean", "grey"], batch_size=100).evaluate(ctx).values
    x = test.x.double().numpy()
    assert values["mse/clean"] == pytest.approx(0.0, abs=1e-12)
    # greyed input, identity model: r = 0.5 everywhere, compared with the CLEAN image
    assert values["mse/grey"] == pytest.approx(np.mean((0.5 - x) ** 2), rel=1e-6)
    assert values["bce/grey"] == pytest.approx(64 * math.log(2), rel=1e-6)
    # clean bce of a perfect reconstruction is the entropy of the grey levels, by hand:
    p = np.clip(x, 1e-6, 1 - 1e-6)
    by_hand = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum((1, 2, 3)).mean()
    assert values["bce/clean"] == pytest.approx(by_hand, rel=1e-5)


def test_reconstruction_targets_the_clean_image_not_the_corrupted_input(tmp_path):
    _, test = digits()
    ctx = context(FlatCodes(64), test, test, decoder=testing.ConstantDecoder((1, 8, 8)),
                  corruptions={"noise": UniformNoise()}, tmp_path=tmp_path)
    values = recon.Reconstruction(conditions=["noise"]).evaluate(ctx).values
    # the decoder ignores its input, so noise cannot change the error against the clean image
    assert values["mse/noise"] == pytest.approx(np.mean((0.5 - test.x.double().numpy()) ** 2), rel=1e-6)
    assert set(values) == {"mse/noise", "bce/noise"}


def test_bce_is_nan_for_data_outside_0_1_and_mse_is_kept(tmp_path):
    _, test = digits()
    shifted = Split(test.x * 2 - 1, test.y)
    metric = recon.Reconstruction()
    ctx = context(FlatCodes(64), shifted, shifted, decoder=testing.ConstantDecoder((1, 8, 8)), tmp_path=tmp_path)
    values = metric.evaluate(ctx).values
    assert math.isnan(values["bce/clean"])
    # the worker's check of the declared values passes, so the run keeps its mse (it failed the metric whole)
    kept = _numbers(values, metric.produces())
    assert kept["mse/clean"] == pytest.approx(np.mean((0.5 - shifted.x.double().numpy()) ** 2), rel=1e-6)


def test_svm_and_recon_are_registered():
    seen = {}
    svm.register_metrics(lambda name, cls: seen.setdefault(name, cls))
    recon.register_metrics(lambda name, cls: seen.setdefault(name, cls))
    assert seen == {"svm": svm.SemiSupervisedSVM, "svm_refit": svm.RefittedSVM,
                    "recon": recon.Reconstruction}


def test_too_few_labels_per_class_for_the_folds_is_a_clear_error(tmp_path):
    train, test = digits()
    with pytest.raises(BenchbedError, match="cross-validation folds"):
        svm.SemiSupervisedSVM(labels=30, cv_folds=5).evaluate(context(FlatCodes(64), train, test,
                                                                      tmp_path=tmp_path))
