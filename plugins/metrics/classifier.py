"""The pretrained digit classifier shared by the ``class_ce`` and ``fid`` metrics.

Not a plugin (no hooks): a small CNN trained once per dataset on that
dataset's whole train split (``ctx.dataset.load("train")``, not the run's
``train_subset``, so every run of a dataset shares one good classifier),
scored on its test split, and cached in the store's shared cache as

    <cache_dir>/classifiers/<dataset>-<hash>.pt    a state dict (torch.save)
    <cache_dir>/classifiers/<dataset>-<hash>.json  its architecture, test accuracy, timing

The hash covers the training recipe and the bytes of the train split, so a
different binarisation or subset gets its own classifier. Parallel runs take
a file lock and the files are written to a temporary name and renamed, so a
reader never sees half a file.

Network (for C x H x W inputs, H and W >= 4):
    conv3x3(C->16) ReLU maxpool2, conv3x3(16->32) ReLU maxpool2,
    linear(32 * H/4 * W/4 -> 128) ReLU  (the "penultimate" features, used by FID),
    linear(128 -> K) logits.
On MNIST (50k train) 3 epochs of Adam with a one-cycle schedule give about
99.1-99.2% test accuracy in about a minute on one CPU thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchbed.plugin_api.components import Split
from benchbed.errors import BenchbedError
from benchbed.files import atomic_write, file_lock


@dataclass(frozen=True)
class ClassifierRecipe:
    """How the classifier is built and trained; part of the cache key."""

    channels: tuple[int, int] = (16, 32)
    hidden: int = 128
    epochs: int = 3
    min_steps: int = 1500  # small datasets (8x8 digits) get more epochs, not fewer steps
    batch_size: int = 64
    max_lr: float = 3e-3
    seed: int = 0  # fixed, not the run seed: one classifier serves every run
    version: int = 1  # bump when the code changes what a recipe means


DEFAULT_RECIPE = ClassifierRecipe()


class DigitClassifier(nn.Module):
    """Two conv blocks, a hidden layer (the FID features) and class logits."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int,
                 channels: tuple[int, int] = (16, 32), hidden: int = 128):
        super().__init__()
        if height < 4 or width < 4:
            raise BenchbedError(f"the digit classifier needs images of at least 4x4 pixels, "
                                f"got {height}x{width}")
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.hidden = nn.Sequential(nn.Linear(c2 * (height // 4) * (width // 4), hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The penultimate layer (after its ReLU): what FID compares."""
        return self.hidden(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------ helpers


def dataset_label(ctx: Any) -> str:
    """A readable file-name prefix for the run's dataset."""
    spec = (getattr(ctx, "config", None) or {}).get("dataset")
    name = spec.get("name") if isinstance(spec, dict) else spec
    if not isinstance(name, str) or not name:
        name = type(ctx.dataset).__name__
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "dataset"


def tensor_digest(*tensors: Tensor | None) -> str:
    """sha256 of the tensors' shapes, dtypes and bytes (None counts too)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            digest.update(b"none;")
            continue
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{array.dtype}{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def full_train_split(ctx: Any) -> Split:
    """The dataset's whole train split (datasets cache loads per process)."""
    return ctx.dataset.load("train")


def num_classes_of(ctx: Any, train: Split | None = None) -> int:
    train = full_train_split(ctx) if train is None else train
    info_k = ctx.dataset.info().num_classes
    if train.y is None:
        raise BenchbedError("the digit classifier needs class labels, but the dataset's train "
                            "split has none (class_ce and fid with extractor 'classifier' need "
                            "a labelled dataset)")
    return int(info_k) if info_k else int(train.y.max()) + 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------- training


def train_classifier(train: Split, num_classes: int, recipe: ClassifierRecipe = DEFAULT_RECIPE,
                     device: torch.device | str = "cpu") -> DigitClassifier:
    """Adam with a one-cycle learning rate and cross-entropy, for ``recipe.epochs``
    passes or at least ``recipe.min_steps`` steps."""
    # Metrics are evaluated under no_grad; fork_rng leaves the run's global RNG as it was.
    # One torch thread whatever the run has: the classifier is cached per store and
    # shared by every run, so it must not depend on which run happened to train it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            return _fit(train, num_classes, recipe, device)
    finally:
        torch.set_num_threads(threads)


def _fit(train: Split, num_classes: int, recipe: ClassifierRecipe, device) -> DigitClassifier:
    _, c, h, w = train.x.shape
    torch.manual_seed(recipe.seed)  # the weight init; batches use their own generator
    model = DigitClassifier(c, h, w, num_classes, recipe.channels, recipe.hidden).to(device)
    generator = torch.Generator().manual_seed(recipe.seed)
    n = len(train)
    batch_size = min(recipe.batch_size, n)
    steps_per_epoch = n // batch_size
    epochs = max(recipe.epochs, math.ceil(recipe.min_steps / steps_per_epoch))
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe.max_lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size:(step + 1) * batch_size]
            x, y = train.x[idx].to(device), train.y[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Logits for ``x`` in batches, on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    return torch.cat([model(x[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(x), batch_size)])


def accuracy_percent(model: nn.Module, split: Split) -> float:
    if split.y is None or len(split) == 0:
        return float("nan")
    predicted = predict_logits(model, split.x).argmax(1)
    return 100.0 * float((predicted == split.y.cpu()).double().mean())


# -------------------------------------------------------------------- cache


def classifier_paths(ctx: Any, recipe: ClassifierRecipe | None = None) -> tuple[Path, Path]:
    """The (state dict, metadata) files for this dataset and recipe."""
    recipe = recipe or DEFAULT_RECIPE
    train = full_train_split(ctx)
    key = hashlib.sha256(json.dumps(
        {"recipe": dataclasses.asdict(recipe),
         "train": tensor_digest(train.x, train.y)}, sort_keys=True).encode()).hexdigest()
    stem = f"{dataset_label(ctx)}-{key[:16]}"
    folder = Path(ctx.cache_dir) / "classifiers"
    return folder / f"{stem}.pt", folder / f"{stem}.json"


def load_classifier(weights_path: str | Path,
                    device: torch.device | str = "cpu") -> tuple[DigitClassifier, dict]:
    """Rebuild a cached classifier from its state dict and the JSON beside it."""
    weights_path = Path(weights_path)
    meta = json.loads(weights_path.with_suffix(".json").read_text())
    arch = meta["architecture"]
    model = DigitClassifier(arch["in_channels"], arch["height"], arch["width"], arch["num_classes"],
                            tuple(arch["channels"]), arch["hidden"])
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta


_LOADED: dict[tuple[str, str], tuple[DigitClassifier, dict]] = {}


def get_classifier(ctx: Any, recipe: ClassifierRecipe | None = None) -> tuple[DigitClassifier, float]:
    """The dataset's classifier (trained now if not cached) and its test accuracy in percent."""
    model, meta = get_classifier_with_meta(ctx, recipe)
    return model, float(meta["accuracy"])


def get_classifier_with_meta(ctx: Any,
                             recipe: ClassifierRecipe | None = None) -> tuple[DigitClassifier, dict]:
    """As ``get_classifier``, with the metadata JSON as a dict."""
    recipe = recipe or DEFAULT_RECIPE  # read at call time, so tests can swap in a cheap recipe
    weights_path, meta_path = classifier_paths(ctx, recipe)
    memo_key = (str(weights_path), str(ctx.device))
    if memo_key in _LOADED:
        return _LOADED[memo_key]
    with file_lock(weights_path.with_suffix(".lock")):
        if not (weights_path.exists() and meta_path.exists()):
            _train_and_store(ctx, recipe, weights_path, meta_path)
    loaded = load_classifier(weights_path, ctx.device)
    _LOADED[memo_key] = loaded
    return loaded


def _train_and_store(ctx: Any, recipe: ClassifierRecipe, weights_path: Path, meta_path: Path) -> None:
    train = full_train_split(ctx)
    k = num_classes_of(ctx, train)
    _, c, h, w = train.x.shape
    started = time.perf_counter()
    model = train_classifier(train, k, recipe, ctx.device)
    seconds = time.perf_counter() - started
    meta = {
        "dataset": dataset_label(ctx),
        "accuracy": accuracy_percent(model, ctx.test),
        "test_size": len(ctx.test),
        "train_size": len(train),
        "train_seconds": round(seconds, 2),
        "torch_threads": 1,  # train_classifier trains with one thread
        "architecture": {"in_channels": c, "height": h, "width": w, "num_classes": k,
                         "channels": list(recipe.channels), "hidden": recipe.hidden},
        "recipe": dataclasses.asdict(recipe),
        "value_range": list(ctx.dataset.info().value_range),
    }
    state = {name: t.detach().cpu() for name, t in model.state_dict().items()}
    atomic_torch_save(state, weights_path)
    # The JSON goes last: its presence says the weights are complete.
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
