"""Learnt frame-rate changes between the SEANet latents (25 Hz) and the quantizer frames (12.5 Hz).

``ConvDownsample`` is a causal strided conv (kernel ``2 * stride``, replicate left padding, no bias) mixing all
channels; ``ConvUpsample`` is a causal transposed conv (kernel ``2 * stride``, no bias), channel-wise
(``groups = dimension``) as in the published Mimi weights. Keys: ``conv.conv.conv.weight`` and
``convtr.convtr.convtr.weight`` under the attribute names ``downsample`` / ``upsample`` of the codec.
"""

from __future__ import annotations

import torch

from delaykit.codec.conv import CausalConv1d, CausalConvTranspose1d
from delaykit.streaming import StreamingContainer


class ConvDownsample(StreamingContainer):
    """``[B, D, T]`` -> ``[B, D, T // stride]``; streaming chunks must be multiples of ``stride``."""

    def __init__(self, dimension: int, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.conv = CausalConv1d(
            dimension, dimension, 2 * stride, stride=stride, bias=False, pad_mode="replicate"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D, T]
        return self.conv(x)  # [B, D, T // stride]


class ConvUpsample(StreamingContainer):
    """``[B, D, S]`` -> ``[B, D, S * stride]``."""

    def __init__(self, dimension: int, stride: int = 2, channel_wise: bool = True) -> None:
        super().__init__()
        self.stride = stride
        groups = dimension if channel_wise else 1
        self.convtr = CausalConvTranspose1d(
            dimension, dimension, 2 * stride, stride=stride, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D, S]
        return self.convtr(x)  # [B, D, S * stride]
