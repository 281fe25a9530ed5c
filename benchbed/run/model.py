"""The autoencoder assembled from an encoder, a decoder and a prior, and what a metric sees of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchbed.distributions import Posterior
from benchbed.plugin_api.components import Codes, Corruption, Dataset, Decoder, Encoder, Prior, Split


class Autoencoder(nn.Module):
    """Encoder q(z|x), decoder p(x|z) and prior p(z), with the samplers
    that metrics and figures use."""

    def __init__(self, encoder: Encoder, decoder: Decoder, prior: Prior, latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior  # not a module: priors hold no trainable state
        self.latent_dim = latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: Tensor) -> Posterior:
        return self.encoder(x)

    def codes(self, x: Tensor, generator: torch.Generator | None = None) -> Codes:
        posterior = self.encoder(x)
        return Codes(x=x, posterior=posterior, z=posterior.rsample(generator), prior=self.prior)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean: the picture a reader calls a reconstruction."""
        return self.decoder.mean(self.encoder(x).mean)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling: z ~ p(z), x ~ p(x|z); returns the decoder mean of x,
        or the draw x itself where the decoder ``shows_samples``."""
        z = self.prior.sample(n, self.latent_dim, generator=generator, device=self.device)
        if self.decoder.shows_samples:
            return self.decoder.sample(z, generator=generator)
        return self.decoder.mean(z)

    @torch.no_grad()
    def markov_chain(self, x0: Tensor, steps: int, generator: torch.Generator | None = None,
                     keep_every: int = 1) -> list[Tensor]:
        """InfoVAE Proposition 1: z ~ q(z|x), x ~ p(x|z), repeated ``steps`` times.

        Returns the chain's states every ``keep_every`` steps, starting with
        x0: decoder means for display, or the states x_t themselves where the
        decoder ``shows_samples``.
        """
        states = [x0]
        x = x0
        for t in range(1, steps + 1):
            z = self.encoder(x).rsample(generator)
            x = self.decoder.sample(z, generator=generator)
            if t % keep_every == 0 or t == steps:
                states.append(x if self.decoder.shows_samples else self.decoder.mean(z))
        return states


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
