"""The "wae_conv" architecture: DCGAN-style convolutions with batch norm, as in WAE.

Tolstikhin et al. (Wasserstein Auto-Encoders, 2018) give one network per data
set; VIMAE section 5.2 reuses them, and InfoVAE's encoder is the same
DCGAN-style CNN (Radford et al.). Layer sizes below follow the WAE paper's
appendix; a ``width`` multiplier scales every channel count so the model fits
a small CPU (width 1/8 is the usual choice here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field
from torch import Tensor, nn

from benchbed import hookimpl
from benchbed.plugin_api.components import Architecture, Decoder, Encoder
from benchbed_plugins.architectures.layout import ConvStack, conv_layout, with_conv_layout
from benchbed_plugins.architectures.likelihoods import (
    FeatureEncoder,
    LikelihoodDecoder,
    LikelihoodParams,
    PosteriorHead,
    PosteriorParams,
    make_likelihood,
)


@dataclass(frozen=True)
class ConvLayout:
    """Channel counts and kernel of one published WAE network (before ``width``)."""

    encoder_channels: tuple[int, ...]
    encoder_kernel: int
    decoder_start: int  # side of the first feature map after the decoder's FC layer
    decoder_start_channels: int
    decoder_channels: tuple[int, ...]  # stride-2 transposed convs, each doubling the side
    decoder_kernel: int


# keyed by (H, W); any number of image channels is accepted
LAYOUTS: dict[tuple[int, int], ConvLayout] = {
    # MNIST 28x28: 4 convs k4 s2 (28 -> 14 -> 7 -> 4 -> 2), FC; FC to 7x7x1024, deconvs to 14, 28
    (28, 28): ConvLayout((128, 256, 512, 1024), 4, 7, 1024, (512, 256), 4),
    # CelebA 64x64: 4 convs k5 s2 (64 -> 32 -> 16 -> 8 -> 4), FC; FC to 8x8x1024, deconvs to 16, 32, 64
    (64, 64): ConvLayout((128, 256, 512, 1024), 5, 8, 1024, (512, 256, 128), 5),
}


def layout_for(shape: tuple[int, ...]) -> ConvLayout:
    if len(shape) != 3 or tuple(shape[1:]) not in LAYOUTS:
        supported = ", ".join(f"(C, {h}, {w})" for h, w in LAYOUTS)
        raise ValueError(f"wae_conv supports image shapes {supported} (e.g. MNIST (1, 28, 28), "
                         f"CelebA (3, 64, 64)); got {tuple(shape)}")
    return LAYOUTS[tuple(shape[1:])]


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def same_padding(size: int, kernel: int, stride: int) -> nn.ZeroPad2d:
    """TensorFlow's 'SAME' padding (output side ceil(size / stride)), as the WAE code used;
    it can be uneven, so it is an explicit pad layer."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return nn.ZeroPad2d((before, total - before, before, total - before))


def norm_and_relu(channels: int, batch_norm: bool) -> list[nn.Module]:
    return ([nn.BatchNorm2d(channels)] if batch_norm else []) + [nn.ReLU()]


def upsample_twice(c_in: int, c_out: int, kernel: int) -> nn.ConvTranspose2d:
    """A stride-2 transposed conv whose output side is exactly twice its input side."""
    padding = (kernel - 1) // 2
    output_padding = 2 - kernel + 2 * padding
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=padding,
                              output_padding=output_padding)


class Unflatten(nn.Module):
    def __init__(self, channels: int, side: int):
        super().__init__()
        self.channels, self.side = channels, side

    def forward(self, h: Tensor) -> Tensor:
        return conv_layout(h.reshape(h.shape[0], self.channels, self.side, self.side))


class WAEConv(Architecture):
    """DCGAN/WAE-style convolutional encoder and decoder with batch norm.

    Encoder (MNIST 28x28): 4 x [conv k4 s2 'SAME' -> BN -> ReLU] with
    128-256-512-1024 channels (28 -> 14 -> 7 -> 4 -> 2), then a linear map to
    (mean, logvar) of q(z|x) = N(mean, diag(exp(logvar))), or to z for a
    deterministic encoder. CelebA 64x64: the same with k5
    (64 -> 32 -> 16 -> 8 -> 4).
    Decoder (MNIST): FC z -> 7x7x1024 -> BN -> ReLU, transposed convs k4 s2
    to 512 and 256 channels (7 -> 14 -> 28) each with BN + ReLU, then a
    stride-1 conv to C raw maps for the pixel likelihood. CelebA: FC to
    8x8x1024, transposed convs k5 s2 to 512-256-128 (8 -> 64), then to C.
    Every channel count is multiplied by ``width`` (rounded, at least 1), so
    the conv parameter count scales as width^2.

    Supported image shapes: (C, 28, 28) and (C, 64, 64); others are rejected.
    Batch norm makes log p(x|z) depend on the batch in training mode: call
    ``.eval()`` before evaluating likelihoods.

    Params: width, batch_norm, posterior (encoder), likelihood / sigma /
    sigma_shape / min_sigma (decoder).
    """

    class Params(LikelihoodParams, PosteriorParams):
        """wae_conv params: width, batch_norm, posterior, decoder likelihood."""

        width: float = Field(1.0, gt=0, description="multiplier of every channel count "
                             "(0.125 fits a 2-core CPU)")
        batch_norm: bool = Field(True, description="batch norm after each hidden conv (WAE uses it)")

    def build_encoder(self, shape: tuple[int, ...], latent_dim: int) -> Encoder:
        layout = layout_for(shape)
        w, bn = self.params.width, self.params.batch_norm
        layers: list[nn.Module] = []
        c_in, side = shape[0], shape[1]
        for c in layout.encoder_channels:
            c_out = scaled(c, w)
            layers += [same_padding(side, layout.encoder_kernel, 2),
                       nn.Conv2d(c_in, c_out, layout.encoder_kernel, stride=2),
                       *norm_and_relu(c_out, bn)]
            c_in, side = c_out, math.ceil(side / 2)
        head = PosteriorHead(c_in * side * side, latent_dim, self.params.posterior)
        return FeatureEncoder(with_conv_layout(ConvStack(*layers)), head, latent_dim)

    def build_decoder(self, shape: tuple[int, ...], latent_dim: int) -> Decoder:
        layout = layout_for(shape)
        w, bn = self.params.width, self.params.batch_norm
        c_in, side = scaled(layout.decoder_start_channels, w), layout.decoder_start
        layers: list[nn.Module] = [nn.Linear(latent_dim, c_in * side * side), Unflatten(c_in, side),
                                   *norm_and_relu(c_in, bn)]
        for c in layout.decoder_channels:
            c_out = scaled(c, w)
            layers += [upsample_twice(c_in, c_out, layout.decoder_kernel), *norm_and_relu(c_out, bn)]
            c_in, side = c_out, side * 2
        assert side == shape[1], "layout does not reach the image side"
        layers += [same_padding(side, layout.decoder_kernel, 1),
                   nn.Conv2d(c_in, shape[0], layout.decoder_kernel)]
        likelihood = make_likelihood(self.params, tuple(shape))
        return LikelihoodDecoder(with_conv_layout(nn.Sequential(*layers)), likelihood, tuple(shape),
                                 latent_dim)


@hookimpl
def register_architectures(register):
    register("wae_conv", WAEConv)
