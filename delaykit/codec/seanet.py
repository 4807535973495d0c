"""SEANet convolutional encoder and decoder (the waveform <-> latent part of the Mimi codec).

The encoder maps audio ``[B, channels, T]`` to latents ``[B, dimension, T / hop]`` with a first conv, then one
stage per ratio (residual blocks, ELU, strided conv doubling the width), then ELU and a last conv. The decoder
mirrors it with transposed convs. Every conv is causal, so both stream chunk by chunk (audio chunks a multiple
of the hop for the encoder, any number of latent steps for the decoder).

Sub-modules sit in ``model`` at the same indices as in Kyutai's checkpoints (activations count as entries), so
``encoder.model.0.conv.conv.weight``, ``decoder.model.2.convtr.convtr.weight``, ... load directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from delaykit.codec.conv import CausalConv1d, CausalConvTranspose1d
from delaykit.streaming import StreamingContainer


@dataclass(frozen=True)
class SeanetConfig:
    """Shape of a SEANet encoder/decoder pair. ``ratios`` are in decoder (upsampling) order."""

    channels: int = 1
    dimension: int = 512
    n_filters: int = 64
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 6, 5, 4)
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    true_skip: bool = True
    pad_mode: str = "constant"
    elu_alpha: float = 1.0

    @property
    def hop_length(self) -> int:
        """Audio samples per latent step."""
        return math.prod(self.ratios)

    @classmethod
    def mimi(cls) -> SeanetConfig:
        """The published Mimi configuration (hop 960 at 24 kHz -> 25 Hz latents of width 512)."""
        return cls()

    @classmethod
    def small(cls) -> SeanetConfig:
        """Same hop as Mimi with a quarter of the width: trainable on a CPU."""
        return replace(cls(), n_filters=16, dimension=128)

    @classmethod
    def tiny(cls) -> SeanetConfig:
        """A toy model for tests (hop 8)."""
        return replace(cls(), n_filters=4, dimension=16, ratios=(4, 2))


class ResidualUnit(nn.Module):
    """``x + conv1x1(elu(conv_k(elu(x))))`` with a ``compress``-times narrower hidden width."""

    def __init__(self, dim: int, dilation: int, config: SeanetConfig) -> None:
        super().__init__()
        hidden = dim // config.compress
        # Indices 0..3 as in the checkpoints: ELU, conv, ELU, conv.
        self.block = nn.Sequential(
            nn.ELU(config.elu_alpha),
            CausalConv1d(
                dim, hidden, config.residual_kernel_size, dilation=dilation, pad_mode=config.pad_mode
            ),
            nn.ELU(config.elu_alpha),
            CausalConv1d(hidden, dim, 1, pad_mode=config.pad_mode),
        )
        self.shortcut: nn.Module = (
            nn.Identity() if config.true_skip else CausalConv1d(dim, dim, 1, pad_mode=config.pad_mode)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, dim, T]
        return self.shortcut(x) + self.block(x)  # [B, dim, T]


class SeanetEncoder(StreamingContainer):
    """Audio ``[B, channels, T]`` -> latents ``[B, dimension, T // hop_length]``."""

    def __init__(self, config: SeanetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        width = c.n_filters
        layers: list[nn.Module] = [CausalConv1d(c.channels, width, c.kernel_size, pad_mode=c.pad_mode)]
        for ratio in reversed(c.ratios):
            layers += [ResidualUnit(width, c.dilation_base**j, c) for j in range(c.n_residual_layers)]
            layers += [
                nn.ELU(c.elu_alpha),
                CausalConv1d(width, 2 * width, 2 * ratio, stride=ratio, pad_mode=c.pad_mode),
            ]
            width *= 2
        layers += [
            nn.ELU(c.elu_alpha),
            CausalConv1d(width, c.dimension, c.last_kernel_size, pad_mode=c.pad_mode),
        ]
        self.model = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, channels, T]
        return self.model(x)  # [B, dimension, T // hop]


class SeanetDecoder(StreamingContainer):
    """Latents ``[B, dimension, S]`` -> audio ``[B, channels, S * hop_length]``."""

    def __init__(self, config: SeanetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        width = c.n_filters * 2 ** len(c.ratios)
        layers: list[nn.Module] = [CausalConv1d(c.dimension, width, c.kernel_size, pad_mode=c.pad_mode)]
        for ratio in c.ratios:
            layers += [nn.ELU(c.elu_alpha), CausalConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio)]
            width //= 2
            layers += [ResidualUnit(width, c.dilation_base**j, c) for j in range(c.n_residual_layers)]
        layers += [
            nn.ELU(c.elu_alpha),
            CausalConv1d(width, c.channels, c.last_kernel_size, pad_mode=c.pad_mode),
        ]
        self.model = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # z: [B, dimension, S]
        return self.model(z)  # [B, channels, S * hop]
