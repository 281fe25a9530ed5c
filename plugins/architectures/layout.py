"""Memory layout of the convolutional architectures' feature maps (a helper module: no hooks).

oneDNN, torch's CPU convolution library, is fastest on channels-last (NHWC)
tensors: a wae_conv training step at width 1/8 takes about 0.8x the time of the
default NCHW layout, a PixelCNN step about 0.7x (``benchmarks/step_speed.py``).
The layout changes no value a network computes, only where each element sits
in memory (and so, inside the conv kernels, the order of float additions).
Set ``CHANNELS_LAST = False`` before building a network to run its
convolutions on NCHW tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CHANNELS_LAST = True


def with_conv_layout(module: nn.Module) -> nn.Module:
    """``module`` with its 4-D weights stored in the conv layout, so the kernels need
    not reorder them on every call (loading a state_dict keeps the layout)."""
    return module.to(memory_format=torch.channels_last) if CHANNELS_LAST else module


def conv_layout(h: Tensor) -> Tensor:
    """``h`` (N, C, H, W) in the layout the convolutions run in."""
    if CHANNELS_LAST and h.dim() == 4:
        return h.contiguous(memory_format=torch.channels_last)
    return h


class ConvStack(nn.Sequential):
    """An ``nn.Sequential`` of conv layers fed in the conv layout (same state_dict keys)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(conv_layout(x))
