"""The "mlp" architecture: fully connected encoder and decoder (VIMAE section 5.1)."""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from torch import nn

from benchbed import hookimpl
from benchbed.plugin_api.components import Architecture, Decoder, Encoder
from benchbed_plugins.architectures.likelihoods import (
    Activation,
    FeatureEncoder,
    LikelihoodDecoder,
    LikelihoodParams,
    PosteriorHead,
    PosteriorParams,
    make_activation,
    make_likelihood,
)


def hidden_stack(sizes: list[int] | tuple[int, ...], in_features: int, activation: str) -> tuple[nn.Sequential, int]:
    """Linear + activation for each hidden size; returns the stack and its output width."""
    layers: list[nn.Module] = []
    width = in_features
    for size in sizes:
        layers += [nn.Linear(width, size), make_activation(activation)]
        width = size
    return nn.Sequential(*layers), width


class MLP(Architecture):
    """Fully connected encoder and decoder.

    Encoder: h = act(W_L ... act(W_1 flatten(x))), then (mean, logvar) = W_out h
    for a factored Gaussian q(z|x) = N(mean, diag(exp(logvar))), or z = W_out h
    for a deterministic encoder. Decoder: the same hidden stack on z, then one
    raw value per pixel fed to the pixel likelihood (Bernoulli logits, or the
    Gaussian mean through a sigmoid). VIMAE's MNIST experiments use 3 hidden
    layers of 256 units (the default).

    Params: hidden (hidden layer sizes, encoder order; the decoder uses them
    reversed), activation, posterior (encoder), likelihood / sigma /
    sigma_shape / min_sigma (decoder).
    """

    class Params(LikelihoodParams, PosteriorParams):
        """MLP params: hidden sizes, activation, posterior, decoder likelihood."""

        # a tuple keeps the frozen params hashable; YAML lists are accepted
        hidden: tuple[int, ...] = Field((256, 256, 256), description="hidden layer sizes (encoder "
                                        "order; the decoder uses them reversed)")
        activation: Activation = Field("relu", description="nonlinearity after each hidden layer")

        @field_validator("hidden")
        @classmethod
        def _positive_sizes(cls, v):
            if any(size <= 0 for size in v):
                raise ValueError("hidden sizes must be positive")
            return v

    def build_encoder(self, shape: tuple[int, ...], latent_dim: int) -> Encoder:
        body, width = hidden_stack(self.params.hidden, math.prod(shape), self.params.activation)
        body = nn.Sequential(nn.Flatten(), *body)
        return FeatureEncoder(body, PosteriorHead(width, latent_dim, self.params.posterior), latent_dim)

    def build_decoder(self, shape: tuple[int, ...], latent_dim: int) -> Decoder:
        stack, width = hidden_stack(list(reversed(self.params.hidden)), latent_dim, self.params.activation)
        net = nn.Sequential(*stack, nn.Linear(width, math.prod(shape)))
        return LikelihoodDecoder(net, make_likelihood(self.params, tuple(shape)), tuple(shape), latent_dim)


@hookimpl
def register_architectures(register):
    register("mlp", MLP)
