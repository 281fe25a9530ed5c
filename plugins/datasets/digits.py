"""scikit-learn's 8x8 handwritten digits: tiny, shipped with sklearn, for fast tests."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Dataset, DatasetInfo, Params, Split

from benchbed_plugins.datasets import datafiles as df

DIGITS_LEVELS = 16.0  # sklearn's digits hold counts 0..16 (4x4 blocks of a 32x32 bitmap)


def split_digits(test_fraction: float, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """uint8 counts (N, 8, 8) and labels of each split, stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype("uint8")  # integer counts 0..16, exact
    # sklearn's stratified split keeps each class's share in both splits.
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target)
    return {
        "train": (torch.from_numpy(x_train), torch.from_numpy(y_train).long()),
        "test": (torch.from_numpy(x_test), torch.from_numpy(y_test).long()),
    }


class Digits(Dataset):
    """scikit-learn's digits: 1,797 handwritten digits of 8x8 grey levels in [0, 1].

    x = count / 16 with count in {0, ..., 16}; y in {0..9}. No download: the
    data ship with scikit-learn (``sklearn.datasets.load_digits``). Split:
    a stratified random split (each class keeps its share), fixed by ``seed``.

    Params: ``test_fraction`` (share of images in the test split, 0.2),
    ``seed`` (of the split, 0).
    """

    class Params(Params):
        test_fraction: float = Field(0.2, gt=0, lt=1, description="share of the images held out as the test split")
        seed: int = Field(0, ge=0, description="seed of the stratified train/test split")

    def info(self) -> DatasetInfo:
        return DatasetInfo(shape=(1, 8, 8), value_range=(0.0, 1.0), num_classes=10,
                           splits=("train", "test"), binary=False)

    def load(self, split: str) -> Split:
        if split not in ("train", "test"):
            raise ValueError(f"digits has splits train and test, not {split!r}")
        key = ("digits", self.params.test_fraction, self.params.seed)
        splits = df.cached(key, lambda: split_digits(self.params.test_fraction, self.params.seed))
        counts, labels = splits[split]
        return Split(x=df.to_unit_float(counts, DIGITS_LEVELS).unsqueeze(1), y=labels.clone())


@hookimpl
def register_datasets(register):
    register("digits", Digits)
