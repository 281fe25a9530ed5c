"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28x28 grey clothing images.

Where the files come from (param ``source``, ``auto`` tries them in order):

1. ``idx``: IDX files under the data root in torchvision's layout,
   ``<root>/FashionMNIST/raw/train-images-idx3-ubyte[.gz]`` etc.;
2. ``debian``: Debian/Ubuntu's package ``dataset-fashion-mnist``
   (``apt-get install dataset-fashion-mnist``), which installs the four
   gzipped IDX files in ``/usr/share/datasets/fashion-mnist/``; they are
   decompressed once into the data root (that folder is read-only);
3. ``download``: torchvision's download (needs internet).

The pixels are then read by torchvision's FashionMNIST reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Dataset, DatasetInfo, Params, Split

from benchbed_plugins.datasets import datafiles as df

# Where Debian's dataset-fashion-mnist puts the files (checked with
# `dpkg-deb --contents` on version 0.0~git20200523.55506a9-1): the four
# torchvision names with .gz.
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

Source = Literal["auto", "idx", "debian", "download"]


def fashion_raw_folder(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def try_torchvision_download(root: Path) -> str | None:
    """torchvision's Fashion-MNIST download; the error text when it fails."""
    import torchvision

    return df.download_with_torchvision(torchvision.datasets.FashionMNIST, root)


def ensure_fashion_files(root: Path, source: Source, root_hint: str) -> Path:
    raw = fashion_raw_folder(root)
    if df.ensure_plain_idx(raw):
        return raw
    looked = [f"{raw}/{{{', '.join(df.ALL_IDX_FILES)}}}[.gz] (data root from {root_hint})"]

    if source in ("auto", "debian"):
        # Read the module attribute at call time, so tests can point it elsewhere.
        debian = DEBIAN_FOLDER
        if df.idx_files_present(debian):
            df.copy_idx_gz(debian, raw)
            return raw
        looked.append(f"{debian} (Debian package {DEBIAN_PACKAGE}): not there")

    if source in ("auto", "download"):
        error = try_torchvision_download(root)
        if error is None and df.ensure_plain_idx(raw):
            return raw
        looked.append(f"torchvision download into {raw}: {error or 'files still missing'}")

    raise df.not_found(
        "fashion_mnist", looked,
        "To get Fashion-MNIST: put the four IDX files (https://github.com/zalandoresearch/fashion-mnist) "
        f"in the first folder, or `apt-get install {DEBIAN_PACKAGE}`, or run once with internet "
        "(source: download).")


def read_fashion_split(raw: Path, split: str) -> tuple[Tensor, Tensor]:
    import torchvision

    dataset = torchvision.datasets.FashionMNIST(str(raw.parent.parent), train=(split == "train"),
                                                download=False)
    return dataset.data, dataset.targets


class FashionMNIST(Dataset):
    """Fashion-MNIST: 28x28 grey images of 10 kinds of clothing, in [0, 1].

    x = pixel / 255; y in {0..9} (T-shirt/top, Trouser, Pullover, Dress,
    Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot). Split: train 60,000,
    test 10,000.

    Params: ``source`` (auto | idx | debian | download; see the module
    docstring), ``root`` (overrides the data root). Loads are cached per process.
    """

    class Params(Params):
        source: Source = Field("auto", description=(
            "where the files come from: idx (under the data root), debian (package "
            "dataset-fashion-mnist), download (torchvision), or auto (those in order)"))
        root: str | None = Field(None, description="data root; default $BENCHBED_DATA or ~/.cache/benchbed/data")

    def info(self) -> DatasetInfo:
        return DatasetInfo(shape=(1, 28, 28), value_range=(0.0, 1.0), num_classes=10,
                           splits=("train", "test"), binary=False)

    def load(self, split: str) -> Split:
        if split not in df.IDX_FILES:
            raise ValueError(f"fashion_mnist has splits train and test, not {split!r}")
        raw = ensure_fashion_files(df.resolve_root(self.params.root), self.params.source,
                                   df.root_hint(self.params.root))
        key = ("fashion_mnist", split, df.file_stamp(raw / n for n in df.IDX_FILES[split]))
        pixels, labels = df.cached(key, lambda: read_fashion_split(raw, split))
        return Split(x=df.to_unit_float(pixels).unsqueeze(1), y=labels.clone())


@hookimpl
def register_datasets(register):
    register("fashion_mnist", FashionMNIST)
