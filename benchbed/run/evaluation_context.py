"""What a metric sees when it evaluates a trained run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchbed.plugin_api.components import Corruption, Dataset, Split
from benchbed.run.model import Autoencoder


@dataclass
class EvalContext:
    """Everything a metric needs, nothing it must build itself.

    ``corruptions`` maps the suite's condition names to corruption
    instances; ``"clean"`` is never among them. ``cache_dir`` is shared by
    all runs of a store (e.g. the class_ce classifier, FID reference
    statistics). ``figure_dir`` is this run's ``figures/`` folder.
    """

    model: Autoencoder
    dataset: Dataset
    train: Split
    test: Split
    device: torch.device
    seed: int
    run_dir: Path
    cache_dir: Path
    corruptions: dict[str, Corruption] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, float]] = field(default_factory=list)  # rows logged in training

    @property
    def figure_dir(self) -> Path:
        path = self.run_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run seed (and a per-use salt)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)
