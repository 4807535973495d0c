"""A spectral decoder for the codec: latents -> short-time spectra -> waveform by overlap-add (inverse STFT).

A small SEANet decoder has to build every sample of the waveform with transposed convolutions, and at the
widths a CPU can train it left delaykit's first codecs unintelligible to a speech recognizer even from
unquantized latents. Predicting a spectrum every ``hop`` samples and leaving the waveform to an inverse FFT
(the approach of Vocos) needs far less compute per second of audio and learns much faster:

    latents [B, D, S] (the codec's latent rate, ``upsample = latent hop / hop`` spectra per latent)
      -> causal conv to ``channels * upsample`` and a sub-step reshape  -> [B, channels, S * upsample]
      -> ``layers`` causal ConvNeXt blocks (depthwise conv, LayerNorm, MLP, layer scale, residual)
      -> LayerNorm + linear -> log magnitude and phase of ``window // 2 + 1`` bins per step
      -> inverse real FFT, Hann synthesis window, overlap-add at ``hop``   -> [B, 1, S * latent hop]

Spectrum ``t`` covers samples ``[t * hop, t * hop + window)``. Samples ``[t * hop, (t + 1) * hop)`` are final
once spectrum ``t`` is made (every window reaching them has started), so the decoder adds no latency: while
streaming it returns them and keeps the ``window - hop`` overlapping samples as its state, to be added onto
the next call's output. Offline decoding drops that tail, so streaming and offline outputs are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..streaming import StreamingContainer, StreamingModule, StreamState
from .conv import CausalConv1d


@dataclass(frozen=True)
class SpectralDecoderConfig:
    """Shape of a spectral decoder; ``window`` must be a multiple of ``hop`` (4 hops: Hann overlap-adds flat)."""

    hop: int = 240  # samples between spectra (10 ms at 24 kHz); must divide the latent hop
    window: int = 960  # inverse FFT size and synthesis window
    channels: int = 256
    layers: int = 8
    kernel_size: int = 7  # of each block's depthwise causal conv
    expansion: int = 3  # MLP width / channels
    max_log_magnitude: float = 6.0  # clamp before exp: keeps a bad step from exploding

    @property
    def bins(self) -> int:
        return self.window // 2 + 1


class ConvNeXtBlock(StreamingContainer):
    """``x + scale * mlp(norm(depthwise_causal_conv(x)))`` on ``[B, C, T]``."""

    def __init__(self, channels: int, kernel_size: int, expansion: int) -> None:
        super().__init__()
        self.depthwise = CausalConv1d(channels, channels, kernel_size, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.expand = nn.Linear(channels, expansion * channels)
        self.contract = nn.Linear(expansion * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, T]
        y = self.depthwise(x).transpose(1, 2)  # [B, T, C]
        y = self.contract(F.gelu(self.expand(self.norm(y)))) * self.scale  # [B, T, C]
        return x + y.transpose(1, 2)


@dataclass
class OverlapState(StreamState):
    """Samples already summed into the next ``window - hop`` output positions."""

    tail: torch.Tensor  # [B, window - hop]

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        self.tail[reset_mask] = 0.0


class OverlapAdd(StreamingModule[OverlapState]):
    """Windowed frames ``[B, steps, window]`` -> waveform ``[B, steps * hop]`` (see the module docstring)."""

    def __init__(self, window: int, hop: int) -> None:
        super().__init__()
        if window % hop:
            raise ValueError(f"window {window} is not a multiple of hop {hop}")
        self.window_length = window
        self.hop = hop
        with torch.device("cpu"):  # computed for real even when the model is built on the meta device
            hann = torch.hann_window(window, periodic=True)  # [window]
            gain = hann.square().view(-1, hop).sum(0).mean()  # what overlap-added Hann^2 sums to (1.5 at 4 hops)
        # Saved with the weights (a meta-built model gets it from the checkpoint), never trained.
        self.register_buffer("window", hann / gain)

    def init_state(self, batch_size: int) -> OverlapState:
        tail = torch.zeros(batch_size, self.window_length - self.hop, device=self.window.device)
        return OverlapState(batch_size, self.window.device, tail)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # frames: [B, steps, window]
        batch, steps, _ = frames.shape
        length = steps * self.hop
        summed = F.fold((frames * self.window).transpose(1, 2), output_size=(1, length + self.window_length - self.hop),
                        kernel_size=(1, self.window_length), stride=(1, self.hop))  # [B, 1, 1, length + overlap]
        summed = summed.view(batch, -1)
        state = self.state
        if state is None:
            return summed[:, :length]  # [B, steps * hop]
        overlap = self.window_length - self.hop
        summed = torch.cat([summed[:, :overlap] + state.tail, summed[:, overlap:]], dim=1)
        tail = summed[:, length:]  # [B, overlap]
        state.tail = tail if state.all_executing else torch.where(state.exec_mask[:, None], tail, state.tail)
        return summed[:, :length]


class FrameTrunk(StreamingContainer):
    """What the spectral decoders share: latents ``[B, dimension, S]`` -> features ``[B, S * upsample,
    channels]``, one per ``hop`` samples (causal conv, sub-step reshape, ConvNeXt blocks, LayerNorm)."""

    def __init__(self, config: SpectralDecoderConfig, dimension: int, latent_hop: int) -> None:
        super().__init__()
        if latent_hop % config.hop:
            raise ValueError(f"the spectral hop {config.hop} does not divide the latent hop {latent_hop}")
        self.config = config
        self.upsample = latent_hop // config.hop
        self.input = CausalConv1d(dimension, config.channels * self.upsample, 3)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(config.channels, config.kernel_size, config.expansion)
                                      for _ in range(config.layers)])
        self.norm = nn.LayerNorm(config.channels)
        self.overlap_add = OverlapAdd(config.window, config.hop)

    @property
    def hop_length(self) -> int:
        return self.upsample * self.config.hop

    def features(self, latent: torch.Tensor) -> torch.Tensor:
        """Per-step features ``[B, S * upsample, channels]`` of the latents ``[B, dimension, S]``."""
        batch, _, length = latent.shape
        x = self.input(latent).view(batch, -1, self.upsample, length)  # [B, C, upsample, S]
        x = x.transpose(2, 3).reshape(batch, -1, length * self.upsample)  # [B, C, steps]
        return self.norm(self.blocks(x).transpose(1, 2))  # [B, steps, C]

    def synthesize(self, spectra: torch.Tensor) -> torch.Tensor:
        """Complex spectra ``[B, steps, bins]`` -> audio ``[B, 1, steps * hop]`` (inverse FFT, overlap-add)."""
        frames = torch.fft.irfft(spectra, n=self.config.window, norm="ortho")  # [B, steps, window]
        return self.overlap_add(frames)[:, None]


class SpectralDecoder(FrameTrunk):
    """Latents ``[B, dimension, S]`` -> audio ``[B, 1, S * latent_hop]``."""

    def __init__(self, config: SpectralDecoderConfig, dimension: int, latent_hop: int) -> None:
        super().__init__(config, dimension, latent_hop)
        self.head = nn.Linear(config.channels, 2 * config.bins)
        with torch.no_grad():  # start near silence (-35 dB per bin) rather than at full-scale noise
            self.head.bias[: config.bins].fill_(-4.0)

    def spectra(self, latent: torch.Tensor) -> torch.Tensor:
        """Complex spectra ``[B, S * upsample, bins]`` of the latents ``[B, dimension, S]``."""
        log_magnitude, phase = self.head(self.features(latent)).chunk(2, dim=-1)  # [B, steps, bins] each
        magnitude = log_magnitude.clamp(max=self.config.max_log_magnitude).exp()
        return torch.polar(magnitude, phase)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:  # latent: [B, dimension, S]
        return self.synthesize(self.spectra(latent))  # [B, 1, S * latent_hop]
