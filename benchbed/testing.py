"""What a plugin's tests need to exercise a component without training a suite.

Small, exact stand-ins: a prior by name, ``Codes`` from a batch of codes,
encoders and decoders whose output is known in closed form, a small real
model, and the ``EvalContext`` a metric sees::

    from benchbed import testing

    codes = testing.point_codes(torch.randn(64, 4))           # q(z) = the given codes, p(z) = N(0, I)
    value = MyDivergence()(codes)

    model = testing.tiny_model(shape=(1, 8, 8), latent_dim=2)  # a real MLP autoencoder
    ctx = testing.eval_context(model, testing.split(x, y), run_dir=tmp_path)
    result = MyMetric().evaluate(ctx)

Compare what the component computes with something independent of its code
(a naive loop, a closed form): the fakes here exist so that such a
reference is easy to write.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchbed.components import (Codes, Corruption, Dataset, DatasetInfo, Decoder, Encoder, Objective,
                                 Prior, Split)
from benchbed.distributions import DeterministicPosterior, GaussianPosterior
from benchbed.run.model import Autoencoder, EvalContext

__all__ = ["prior", "point_codes", "gaussian_codes", "objective", "FlatEncoder", "ReshapeDecoder",
           "ConstantDecoder", "FixedSamplesPrior", "InMemoryDataset", "ReplayModel", "split", "tiny_model", "model",
           "eval_context"]


def _registry():
    from benchbed.plugins import get_registry
    return get_registry()


def prior(name: str = "normal", **params: Any) -> Prior:
    """A registered prior by its suite name, e.g. ``prior("logistic")``."""
    return _registry().create("prior", {"name": name, **params})


def _as_prior(p: Prior | str | None) -> Prior:
    return prior(p) if isinstance(p, str) else (p if p is not None else prior("normal"))


def point_codes(z: Tensor, prior: Prior | str | None = None, x: Tensor | None = None) -> Codes:
    """``Codes`` for a batch of codes z (batch x latent): the posterior is a point
    mass at z, which is all a minibatch divergence looks at; ``prior`` is a
    ``Prior`` or a registered name (default "normal")."""
    x = torch.empty(z.shape[0], 0) if x is None else x
    return Codes(x=x, posterior=DeterministicPosterior(z), z=z, prior=_as_prior(prior))


def gaussian_codes(mean: Tensor, logvar: Tensor, prior: Prior | str | None = None,
                   generator: torch.Generator | None = None, x: Tensor | None = None) -> Codes:
    """``Codes`` with the Gaussian posterior N(mean, exp(logvar)) and z one
    reparameterised draw from it (what a KL or an objective needs)."""
    posterior = GaussianPosterior(mean, logvar)
    x = torch.empty(mean.shape[0], 0) if x is None else x
    return Codes(x=x, posterior=posterior, z=posterior.rsample(generator), prior=_as_prior(prior))


def objective(name: str, divergence: dict[str, Any] | str | None | bool = True, latent_dim: int = 2,
              **params: Any) -> Objective:
    """A registered objective, bound as the trainer binds it: to its default
    divergence (``divergence=True``), to the one given (a name or a spec), or
    to none (``None``)."""
    registry = _registry()
    built = registry.create("objective", {"name": name, **params})
    spec = built.default_divergence if divergence is True else divergence
    built.bind(registry.create("divergence", spec) if spec else None, latent_dim)
    return built


class FlatEncoder(Encoder):
    """The code of x is x flattened: a point mass there, or with ``logvar`` the
    Gaussian N(x, exp(logvar)) (so a metric that must use the mean and not a
    sample can be caught). ``scale`` multiplies the mean."""

    def __init__(self, latent_dim: int, logvar: float | None = None, scale: float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.logvar, self.scale = logvar, scale
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, x: Tensor):
        mean = self.scale * x.reshape(x.shape[0], -1)
        if self.logvar is None:
            return DeterministicPosterior(mean)
        return GaussianPosterior(mean, torch.full_like(mean, self.logvar))


class ReshapeDecoder(Decoder):
    """mean(z) = z reshaped to the image ``shape``: with a ``FlatEncoder`` the
    model reconstructs exactly. ``sample`` returns the mean; no likelihood."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def mean(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.shape)

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.mean(z)


class ConstantDecoder(ReshapeDecoder):
    """Every code decodes to the same grey image (``value`` everywhere)."""

    def __init__(self, shape: tuple[int, ...], value: float = 0.5):
        super().__init__(shape)
        self.value = value

    def mean(self, z: Tensor) -> Tensor:
        return torch.full((z.shape[0], *self.shape), self.value, device=z.device)


class FixedSamplesPrior(Prior):
    """Hands out prepared "prior samples" (and logs what it was asked for), so a
    test can redo a divergence's sums by hand; log_prob and score are N(0, I)'s."""

    def __init__(self, samples: Tensor):
        super().__init__()
        self.samples = samples
        self.asked: list[tuple[int, int]] = []

    def sample(self, n: int, dim: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        self.asked.append((n, dim))
        if (n, dim) != tuple(self.samples.shape):
            raise ValueError(f"asked for {n} x {dim} prior samples, holding {tuple(self.samples.shape)}")
        return self.samples.to(device)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)

    def score(self, z: Tensor) -> Tensor:
        return -z


def split(x: Tensor, y: Tensor | None = None) -> Split:
    """A ``Split`` of images x (N, C, H, W) and optional int labels."""
    return Split(x, None if y is None else torch.as_tensor(y, dtype=torch.int64))


class InMemoryDataset(Dataset):
    """A dataset holding given splits (values in [0, 1])."""

    def __init__(self, train: Split, test: Split | None = None, num_classes: int | None = None):
        super().__init__()
        self.splits = {"train": train, "test": test if test is not None else train}
        if num_classes is None and train.y is not None:
            num_classes = int(train.y.max()) + 1
        self.num_classes = num_classes

    def info(self) -> DatasetInfo:
        return DatasetInfo(tuple(self.splits["train"].x.shape[1:]), (0.0, 1.0), self.num_classes,
                           ("train", "test"))

    def load(self, split: str) -> Split:
        return self.splits[split]


class ReplayModel:
    """Stands in for an ``Autoencoder`` where only ancestral samples matter
    (sample-quality metrics): ``sample_prior(n)`` hands out the given images
    in order, wrapping around."""

    def __init__(self, images: Tensor):
        self.images, self.offset = images, 0

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = (self.offset + torch.arange(n)) % len(self.images)
        self.offset += n
        return self.images[idx]


def model(encoder: Encoder, decoder: Decoder | None = None, prior: Prior | str | None = None,
          shape: tuple[int, ...] | None = None) -> Autoencoder:
    """An ``Autoencoder`` from given parts; the decoder defaults to a
    ``ReshapeDecoder`` to ``shape`` (default: one row of latent_dim pixels)."""
    if decoder is None:
        decoder = ReshapeDecoder(shape or (1, 1, encoder.latent_dim))
    return Autoencoder(encoder, decoder, _as_prior(prior), encoder.latent_dim)


def tiny_model(shape: tuple[int, int, int] = (1, 8, 8), latent_dim: int = 2, hidden: int = 16,
               prior: Prior | str | None = None, seed: int = 0, **mlp: Any) -> Autoencoder:
    """A real, small MLP autoencoder (the built-in "mlp" architecture, Bernoulli
    decoder by default) initialised from ``seed``: for objectives, and for
    metrics that need a model to train or sample."""
    arch = _registry().create("architecture", {"name": "mlp", "hidden": [hidden], **mlp})
    torch.manual_seed(seed)
    return Autoencoder(arch.build_encoder(shape, latent_dim), arch.build_decoder(shape, latent_dim),
                       _as_prior(prior), latent_dim)


def eval_context(model: Any, train: Split, test: Split | None = None, run_dir: str | Path = ".",
                 cache_dir: str | Path | None = None, seed: int = 0,
                 corruptions: dict[str, Corruption] | None = None, dataset: Dataset | None = None,
                 curves: list[dict[str, float]] | None = None,
                 config: dict[str, Any] | None = None) -> EvalContext:
    """What a metric's ``evaluate`` gets: the test split defaults to ``train``,
    the cache to ``run_dir``, the dataset to an ``InMemoryDataset`` of the splits."""
    test = train if test is None else test
    run_dir = Path(run_dir)
    return EvalContext(model=model, dataset=dataset or InMemoryDataset(train, test), train=train,
                       test=test, device=torch.device("cpu"), seed=seed, run_dir=run_dir,
                       cache_dir=Path(cache_dir) if cache_dir is not None else run_dir,
                       corruptions=corruptions or {}, config=config or {}, curves=curves or [])
