"""Turning a run's resolved config into live objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchbed.plugin_api.components import Dataset, DatasetInfo, Objective
from benchbed.run.model import Autoencoder
from benchbed.plugin_api.registry import Registry


@dataclass
class BuiltRun:
    model: Autoencoder
    objective: Objective
    dataset: Dataset
    info: DatasetInfo


def resolve_device(spec: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def build_run(config: dict[str, Any], registry: Registry) -> BuiltRun:
    """Networks are initialised from the run seed, so a run is repeatable."""
    method = config["method"]
    latent_dim = int(config["latent_dim"])
    dataset = registry.create("dataset", config["dataset"])
    info = dataset.info()
    torch.manual_seed(int(config["seed"]))
    prior = registry.create("prior", method["prior"])
    encoder = registry.create("architecture", method["encoder"]).build_encoder(info.shape, latent_dim)
    decoder = registry.create("architecture", method["decoder"]).build_decoder(info.shape, latent_dim)
    model = Autoencoder(encoder, decoder, prior, latent_dim)
    objective = registry.create("objective", method["objective"])
    refusal = objective.divergence_refusal(method["divergence"]["name"] if method.get("divergence") else None)
    if refusal is not None:  # plan refuses this first; a hand-made config may not have been planned
        raise ValueError(f"objective {method['objective']['name']!r} {refusal}")
    divergence = (registry.create("divergence", method["divergence"])
                  if method.get("divergence") else None)
    objective.bind(divergence, latent_dim)
    return BuiltRun(model=model, objective=objective, dataset=dataset, info=info)
