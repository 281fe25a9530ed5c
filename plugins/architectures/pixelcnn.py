"""The "pixelcnn" architecture: a conditional PixelCNN decoder for binary images.

InfoVAE (appendix B.1) uses "a simplified version of the conditional PixelCNN
architecture" (van den Oord et al., 2016) as p(x|z) on MNIST, with a
DCGAN-style CNN encoder (use "wae_conv" for that slot). This is the plain,
non-gated PixelCNN with z added to every layer as a channel bias; like every
single-stack PixelCNN it has a blind spot (some pixels up and to the right
are never seen), which the gated two-stack variant would remove.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from benchbed import hookimpl
from benchbed.plugin_api.components import Architecture, Decoder, Params
from benchbed_plugins.architectures.layout import conv_layout, with_conv_layout


def causal_mask(kernel: int, include_center: bool) -> Tensor:
    """(kernel, kernel) 0/1 mask: 1 on the rows above the centre and left of it on the
    centre row; the centre itself only for mask B (``include_center``)."""
    mask = torch.zeros(kernel, kernel)
    c = kernel // 2
    mask[:c, :] = 1
    mask[c, :c] = 1
    if include_center:
        mask[c, c] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded conv whose kernel only sees pixels before the centre in
    raster order (mask A), or those and the centre (mask B)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, mask_type: Literal["A", "B"]):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        self.register_buffer("mask", causal_mask(kernel, include_center=mask_type == "B"))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ConditionalPixelCNNDecoder(Decoder):
    """Bernoulli PixelCNN over (1, H, W) images, conditioned on z in every layer.

    h_0 = x; h_l = ReLU(MaskedConv_l(h_{l-1}) + V_l z) for l = 1..L (layer 1
    mask A, the rest mask B; V_l z is a per-channel bias, broadcast over
    pixels); logits = Conv1x1(h_L) + v_out z.
    log p(x|z) = sum_i [x_i l_i - softplus(l_i)], l_i = logit of pixel i,
    which sees only x_{<i} (raster order): one pass with teacher forcing.
    """

    # Decoding runs each pixel's step on its receptive field only: same values,
    # about 3x fewer multiply-adds at 28x28 with the 5-layer net (see _decode).
    crop_to_reach = True

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, n_layers: int, channels: int,
                 kernel_size: int, first_kernel_size: int, mean_decode: str, mean_seed: int):
        super().__init__()
        self.shape = tuple(shape)
        self.latent_dim = latent_dim
        self.mean_decode = mean_decode
        self.mean_seed = mean_seed
        # Samples and chains show draws unless greedy pictures are asked for.
        self.shows_samples = mean_decode == "sample"
        convs = [MaskedConv2d(shape[0], channels, first_kernel_size, "A")]
        convs += [MaskedConv2d(channels, channels, kernel_size, "B") for _ in range(n_layers - 1)]
        self.convs = nn.ModuleList(convs)
        self.conditions = nn.ModuleList(nn.Linear(latent_dim, channels, bias=False) for _ in convs)
        self.out = nn.Conv2d(channels, shape[0], 1)
        self.out_condition = nn.Linear(latent_dim, shape[0], bias=False)
        # rows above (and columns either side) that one pixel's logit can see
        self.reach = first_kernel_size // 2 + (n_layers - 1) * (kernel_size // 2)
        with_conv_layout(self)

    @staticmethod
    def _as_bias(v: Tensor) -> Tensor:
        return v[:, :, None, None]

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Bernoulli logits of every pixel given the pixels before it (teacher forcing)."""
        h = conv_layout(x)
        for conv, condition in zip(self.convs, self.conditions):
            h = F.relu(conv(h) + self._as_bias(condition(z)))
        return self.out(h) + self._as_bias(self.out_condition(z))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(self.logits(x, z), x, reduction="none")
        return -bce.flatten(1).sum(1)

    @torch.no_grad()
    def _decode(self, z: Tensor, choose) -> Tensor:
        """Fill pixels in raster order; ``choose(logits)`` picks each pixel's value.

        The logit of pixel (i, j) depends only on pixels within ``reach`` rows
        above and columns either side (the masks never look down), so each
        step runs on that window of the pixels decoded so far, which is exact:
        a window edge's zero padding only moves values ``reach`` or more pixels
        away. ``crop_to_reach = False`` runs every step on all rows up to i.
        """
        _, height, width = self.shape
        x = torch.zeros(z.shape[0], *self.shape, device=z.device, dtype=z.dtype)
        r = self.reach if self.crop_to_reach else max(height, width)
        for i in range(height):
            top = max(0, i - r)
            for j in range(width):
                left, right = max(0, j - r), min(width, j + r + 1)
                logits = self.logits(x[:, :, top: i + 1, left:right], z)[:, :, i - top, j - left]
                x[:, :, i, j] = choose(logits)
        return x

    def sample(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x ~ p(x|z), pixel by pixel (H*W network passes)."""
        return self._decode(z, lambda logits: torch.bernoulli(torch.sigmoid(logits), generator=generator))

    def mean(self, z: Tensor) -> Tensor:
        """The picture to show: the greedy decode (each pixel 1 iff p > 1/2 given the
        greedy prefix), or a sample with a generator seeded by ``mean_seed``."""
        if self.mean_decode == "greedy":
            return self._decode(z, lambda logits: (logits > 0).to(logits.dtype))
        generator = torch.Generator(device=z.device).manual_seed(self.mean_seed)
        return self.sample(z, generator=generator)


class PixelCNN(Architecture):
    """Conditional PixelCNN decoder p(x|z) for binary (1, H, W) images (decoder only).

    p(x|z) = prod_i Bernoulli(x_i | sigmoid(l_i(x_{<i}, z))), raster order.
    Network: a mask-A conv (first_kernel_size), n_layers - 1 mask-B convs
    (kernel_size), ReLU, 'same' padding, ``channels`` feature maps, z added as
    a learned per-channel bias in every layer and in the 1x1 output conv.
    log_prob is exact in one pass; sample and mean decode pixel by pixel
    (H*W passes: about as costly as H*W/2 training forwards, so keep the
    number of decoded images small in metrics and figures).

    Params: n_layers, channels, kernel_size, first_kernel_size (odd),
    mean_decode ("greedy" or "sample"), mean_seed.
    """

    provides = frozenset({"decoder"})

    class Params(Params):
        """pixelcnn params: depth, width, kernels, what mean(z) shows."""

        n_layers: int = Field(5, ge=1, description="masked conv layers (1 mask A, then mask B)")
        channels: int = Field(32, gt=0, description="feature maps per layer")
        kernel_size: int = Field(3, gt=0, description="kernel of the mask-B layers (odd)")
        first_kernel_size: int = Field(7, gt=0, description="kernel of the mask-A input layer (odd)")
        mean_decode: Literal["greedy", "sample"] = Field(
            "sample", description="what mean(z) shows: a seeded sample (and ancestral samples and "
                                  "chains are draws), or the greedy decode (mostly blank)")
        mean_seed: int = Field(0, description="seed of mean(z) when mean_decode is 'sample'")

        @field_validator("kernel_size", "first_kernel_size")
        @classmethod
        def _odd(cls, v):
            if v % 2 == 0:
                raise ValueError("masked kernels must be odd so the centre pixel is defined")
            return v

    def build_decoder(self, shape: tuple[int, ...], latent_dim: int) -> Decoder:
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"pixelcnn models binary single-channel images (1, H, W); got {tuple(shape)}")
        p = self.params
        return ConditionalPixelCNNDecoder(tuple(shape), latent_dim, p.n_layers, p.channels,
                                          p.kernel_size, p.first_kernel_size, p.mean_decode, p.mean_seed)


@hookimpl
def register_architectures(register):
    register("pixelcnn", PixelCNN)
