"""CelebA faces (Liu et al., 2015) with the WAE preprocessing.

Files, in torchvision's CelebA layout under the data root:
``<root>/celeba/img_align_celeba/000001.jpg ...`` (the aligned 178x218 JPEGs)
and ``<root>/celeba/list_eval_partition.txt`` (lines ``000001.jpg 0``:
0 train, 1 valid, 2 test).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import Tensor

from benchbed import hookimpl
from benchbed.plugin_api.components import Dataset, DatasetInfo, Params, Split

from benchbed_plugins.datasets import datafiles as df

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_FOLDER = "img_align_celeba"


def read_partition(path: Path) -> dict[str, list[str]]:
    """File names of each split, in the order the partition file lists them."""
    by_code: dict[int, list[str]] = {code: [] for code in SPLIT_CODES.values()}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in by_code:
            raise df.DataCorrupted(f"celeba: {path} line {number} is {line!r}, expected '<file> <0|1|2>'")
        by_code[int(parts[1])].append(parts[0])
    return {split: by_code[code] for split, code in SPLIT_CODES.items()}


def wae_transform(crop: int, size: int):
    """WAE's CelebA preprocessing (Tolstikhin et al., 2018): centre crop
    crop x crop, then resize to size x size with PIL's Lanczos (antialiased)
    filter, as their code does; output uint8 (3, size, size)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.CenterCrop(crop),
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.LANCZOS),
        transforms.PILToTensor(),
    ])


def read_images(folder: Path, names: list[str], crop: int, size: int) -> Tensor:
    from PIL import Image

    transform = wae_transform(crop, size)
    out = torch.empty((len(names), 3, size, size), dtype=torch.uint8)
    for i, name in enumerate(names):
        with Image.open(folder / name) as image:
            out[i] = transform(image.convert("RGB"))
    return out


class CelebA(Dataset):
    """CelebA aligned faces, WAE preprocessing: 3x64x64 colour in [0, 1], no labels.

    Each 178x218 image is centre-cropped to 140x140 and resized to 64x64
    (Lanczos), x = pixel / 255. Splits from list_eval_partition.txt:
    train (0, 162,770 images), valid (1, 19,867), test (2, 19,962).
    Full CelebA takes minutes to decode and ~2.4 GB as uint8 (x4 as float),
    so ``limit`` keeps the first images of each split, in partition-file order.

    Params: ``limit`` (max images per split, None = all), ``crop`` (140),
    ``size`` (64), ``root`` (overrides the data root).
    """

    class Params(Params):
        limit: int | None = Field(None, gt=0, description="max images per split (first in partition order)")
        crop: int = Field(140, gt=0, description="side of the centre crop, in source pixels")
        size: int = Field(64, gt=0, description="side of the output images after resizing")
        root: str | None = Field(None, description="data root; default $BENCHBED_DATA or ~/.cache/benchbed/data")

    def info(self) -> DatasetInfo:
        size = self.params.size
        return DatasetInfo(shape=(3, size, size), value_range=(0.0, 1.0), num_classes=None,
                           splits=tuple(SPLIT_CODES), binary=False)

    def load(self, split: str) -> Split:
        if split not in SPLIT_CODES:
            raise ValueError(f"celeba has splits {', '.join(SPLIT_CODES)}, not {split!r}")
        base = df.resolve_root(self.params.root) / "celeba"
        folder, partition = base / IMAGE_FOLDER, base / PARTITION_FILE
        self._check_present(folder, partition)
        names = read_partition(partition)[split][: self.params.limit]
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            shown = [str(folder / name) for name in missing[:3]]
            if len(missing) > 3:
                shown.append(f"... and {len(missing) - 3} more files listed in {partition}")
            raise df.not_found("celeba", shown,
                               "The image folder is incomplete; unpack img_align_celeba.zip again.")
        key = ("celeba", str(folder.resolve()), split, self.params.limit, self.params.crop,
               self.params.size, df.file_stamp([partition]))
        pixels, _ = df.cached(key, lambda: (read_images(folder, names, self.params.crop, self.params.size), None))
        return Split(x=df.to_unit_float(pixels), y=None)

    def _check_present(self, folder: Path, partition: Path) -> None:
        looked = []
        if not folder.is_dir():
            looked.append(f"{folder}/*.jpg: no such folder")
        if not partition.is_file():
            looked.append(f"{partition}: no such file")
        if looked:
            raise df.not_found(
                "celeba", [f"{place} (data root from {df.root_hint(self.params.root)})" for place in looked],
                "To get CelebA: download img_align_celeba.zip and list_eval_partition.txt from "
                "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or torchvision.datasets.CelebA("
                "root, download=True)) and unpack them into the celeba folder above.")


@hookimpl
def register_datasets(register):
    register("celeba", CelebA)
