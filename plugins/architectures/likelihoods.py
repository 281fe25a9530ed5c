"""Shared output heads for the built-in architectures (a helper module: no hooks).

Decoders end in a *pixel likelihood*: the network maps z to raw parameters,
one or more values per pixel, and the likelihood turns them into an exact
log p(x|z), samples and a picture to show. Encoders end in a *posterior
head*: a linear map from features to the posterior's parameters.

Used by ``benchbed_plugins.architectures.mlp`` and ``benchbed_plugins.architectures.conv`` through
``make_likelihood`` (selected by the decoder params ``likelihood`` and
``sigma``) and ``PosteriorHead`` (selected by the encoder param
``posterior``). The parameter fields live in ``LikelihoodParams`` and
``PosteriorParams`` so every architecture spells them the same way.
"""

from __future__ import annotations

import math
from typing import Literal, Union

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from benchbed.plugin_api.components import Decoder, Encoder, Params
from benchbed.distributions import DeterministicPosterior, GaussianPosterior, Posterior

LOG_2PI = math.log(2 * math.pi)

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}
Activation = Literal["relu", "elu", "tanh", "leaky_relu", "gelu", "softplus", "sigmoid"]


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def _sum_over_pixels(t: Tensor) -> Tensor:
    return t.flatten(1).sum(1)


# ---------------------------------------------------------------- likelihoods


class PixelLikelihood(nn.Module):
    """p(x | raw) for images (N, C, H, W), factorised over pixels; ``raw``
    has the shape of x (one raw value per pixel and channel)."""

    def log_prob(self, raw: Tensor, x: Tensor) -> Tensor:
        """log p(x | raw) summed over pixels: shape (N,), nats."""
        raise NotImplementedError

    def sample(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def mean(self, raw: Tensor) -> Tensor:
        raise NotImplementedError


class BernoulliLikelihood(PixelLikelihood):
    """Independent Bernoulli pixels with logits l: p(x) = prod sigmoid(l)^x (1 - sigmoid(l))^(1-x).

    log p(x|z) = -sum_pixels BCEWithLogits(l, x) = sum x*l - softplus(l).
    The same expression is used for continuous targets x in [0, 1] (grey
    MNIST, corrupted inputs): it is then the cross-entropy between
    Bernoulli(x) and Bernoulli(sigmoid(l)), not a normalised density over
    [0, 1] (that would need the continuous Bernoulli constant), which is the
    usual convention in the VAE literature.
    """

    def log_prob(self, raw: Tensor, x: Tensor) -> Tensor:
        # torch's fused BCE-with-logits is numerically stable for large |logits|
        return -_sum_over_pixels(F.binary_cross_entropy_with_logits(raw, x, reduction="none"))

    def sample(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(raw), generator=generator)

    def mean(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)


class GaussianLikelihood(PixelLikelihood):
    """Independent Gaussian pixels N(x; mu, sigma^2) with mu = sigmoid(raw).

    log p(x|z) = sum_pixels [ -0.5 log(2 pi) - log sigma - (x - mu)^2 / (2 sigma^2) ]
    (exact density, constant included). The mean is squashed into (0, 1), the
    data range. sigma is either fixed, or a learned log-sigma parameter that
    is a scalar or one value per pixel (shape (C, H, W)), floored at
    ``min_sigma`` so a pixel that is constant in the data (MNIST borders)
    cannot drive the density to infinity. Samples are mu + sigma * eps,
    unclipped (an exact draw from the model).
    """

    def __init__(self, shape: tuple[int, int, int], sigma: float | None,
                 per_pixel: bool = False, min_sigma: float = 1e-3):
        super().__init__()
        self.min_log_sigma = math.log(min_sigma)
        if sigma is None:
            log_shape = tuple(shape) if per_pixel else ()
            self.log_sigma = nn.Parameter(torch.zeros(log_shape))
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(sigma)))

    def current_log_sigma(self) -> Tensor:
        return self.log_sigma.clamp(min=self.min_log_sigma)

    def log_prob(self, raw: Tensor, x: Tensor) -> Tensor:
        mu = torch.sigmoid(raw)
        log_sigma = self.current_log_sigma()
        log_density = -0.5 * LOG_2PI - log_sigma - 0.5 * (x - mu) ** 2 * torch.exp(-2 * log_sigma)
        return _sum_over_pixels(log_density)

    def sample(self, raw: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mu = torch.sigmoid(raw)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(self.current_log_sigma()) * eps

    def mean(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)


class LikelihoodParams(Params):
    """Decoder output fields shared by the built-in architectures."""

    likelihood: Literal["bernoulli", "gaussian"] = Field(
        "bernoulli", description="pixel likelihood of the decoder: bernoulli (logits) or gaussian")
    sigma: Union[float, Literal["learned"]] = Field(
        0.1, description="gaussian only: fixed pixel standard deviation, or 'learned'")
    sigma_shape: Literal["scalar", "pixel"] = Field(
        "scalar", description="gaussian with sigma 'learned': one log-sigma, or one per pixel")
    min_sigma: float = Field(1e-3, gt=0, description="gaussian: floor of a learned sigma")

    @field_validator("sigma")
    @classmethod
    def _positive_sigma(cls, v):
        if not isinstance(v, str) and not v > 0:
            raise ValueError("sigma must be > 0 or 'learned'")
        return v


def make_likelihood(params: LikelihoodParams, shape: tuple[int, int, int]) -> PixelLikelihood:
    """The pixel likelihood named by the decoder params, for images of ``shape``."""
    if params.likelihood == "bernoulli":
        return BernoulliLikelihood()
    sigma = None if params.sigma == "learned" else float(params.sigma)
    return GaussianLikelihood(tuple(shape), sigma, per_pixel=params.sigma_shape == "pixel",
                              min_sigma=params.min_sigma)


class LikelihoodDecoder(Decoder):
    """A network z -> raw pixel parameters (N, C, H, W) followed by a pixel likelihood."""

    def __init__(self, net: nn.Module, likelihood: PixelLikelihood, shape: tuple[int, int, int],
                 latent_dim: int):
        super().__init__()
        self.net = net
        self.likelihood = likelihood
        self.shape = tuple(shape)
        self.latent_dim = latent_dim

    def raw(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return self.likelihood.log_prob(self.raw(z), x)

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.likelihood.sample(self.raw(z), generator=generator)

    def mean(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.raw(z))


# ------------------------------------------------------------ posterior heads


class PosteriorParams(Params):
    """Encoder output field shared by the built-in architectures."""

    posterior: Literal["gaussian", "deterministic"] = Field(
        "gaussian", description="encoder output: factored gaussian (mean, logvar) or a point mass")


class PosteriorHead(nn.Module):
    """Linear map from features to q(z|x): (mean, logvar) or a point mass at the mean."""

    def __init__(self, in_features: int, latent_dim: int, kind: str):
        super().__init__()
        self.kind = kind
        out = 2 * latent_dim if kind == "gaussian" else latent_dim
        self.linear = nn.Linear(in_features, out)

    def forward(self, features: Tensor) -> Posterior:
        out = self.linear(features)
        if self.kind == "gaussian":
            mean, logvar = out.chunk(2, dim=-1)
            return GaussianPosterior(mean, logvar)
        return DeterministicPosterior(out)


class FeatureEncoder(Encoder):
    """A feature network x -> (N, F) followed by a posterior head."""

    def __init__(self, body: nn.Module, head: PosteriorHead, latent_dim: int):
        super().__init__()
        self.body = body
        self.head = head
        self.latent_dim = latent_dim

    def forward(self, x: Tensor) -> Posterior:
        return self.head(self.body(x).flatten(1))
