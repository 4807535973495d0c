"""A semantic encoder for the codec's first codebook: causal log-mel features and a small strided conv stack.

Mimi quantizes one latent twice: a semantic RVQ (distilled from WavLM) and an acoustic RVQ. A codec trained
here has no speech model to distil from, and its SEANet latent, learnt from spectral losses only, follows the
waveform's fine detail: a 1 ms delay changes half of its first codebook's codes. With a ``SemanticConfig`` the
codec gives its semantic codebooks their own input instead, computed from a representation that does not move
with a small delay or a level change:

    audio [B, 1, T] -> STFT (fixed, ``window`` / ``hop`` samples, a causal conv with a Hann-windowed Fourier basis)
                    -> log mel power [B, n_mels, T / hop]; per step its mean over bands (the level) is taken
                       out and kept as one extra channel divided by 10
                    -> conv, then per stride: strided conv + residual conv (ELU) -> [B, channels, frames]
                    -> 1x1 conv -> [B, dimension, frames]

Everything is causal and streams with the codec (whole frames in, one latent per frame out). Training makes it
phonetic (``delaykit.train.phonemes``); the acoustic codebooks keep reading the SEANet latent, and the decoder
reads the sum of both quantized parts, as in Mimi.

The same stack, wider and on finer log-mel bands (``CodecConfig.mel_encoder``), can also replace the SEANet
encoder as the acoustic codebooks' input: a spectral front end keeps more of the spectral detail that the
spectral decoder has to rebuild than a small waveform encoder does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..mel import mel_filterbank
from ..streaming import StreamingContainer
from .conv import CausalConv1d


@dataclass
class SemanticConfig:
    """Shape of a semantic encoder; ``hop * prod(strides)`` must be the codec's frame size."""

    window: int = 480  # STFT window in samples (20 ms at 24 kHz); also the FFT size
    hop: int = 240  # samples between STFT steps (10 ms)
    n_mels: int = 64
    channels: int = 256
    strides: tuple[int, ...] = (2, 2, 2)  # 100 Hz -> 12.5 Hz
    floor: float = 1e-6  # added to the mel power before the log (about -60 dB below full scale)

    @property
    def hop_length(self) -> int:
        return self.hop * math.prod(self.strides)


def _fourier_basis(window: int) -> torch.Tensor:
    """Hann-windowed cosines and sines as conv kernels [2 * (window // 2 + 1), 1, window]."""
    n = torch.arange(window, dtype=torch.float64)
    bins = torch.arange(window // 2 + 1, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / window)  # periodic Hann [window]
    phase = 2 * math.pi * bins[:, None] * n[None] / window  # [bins, window]
    basis = torch.cat([torch.cos(phase), torch.sin(phase)]) * hann / hann.sum()  # [2 * bins, window]
    return basis[:, None].float()


class SemanticEncoder(StreamingContainer):
    """Audio ``[B, 1, T]`` -> semantic latent ``[B, dimension, T // hop_length]``."""

    def __init__(self, config: SemanticConfig, sample_rate: int, dimension: int) -> None:
        super().__init__()
        self.config = config
        bins = config.window // 2 + 1
        self.stft = CausalConv1d(1, 2 * bins, config.window, stride=config.hop, bias=False)
        # Fixed transforms: the Fourier basis and the mel filterbank are computed here, never trained, saved or
        # loaded (checkpoints written before they were computed carry them: the load hook below drops them).
        layer = self.stft.conv.conv
        del layer.weight
        with torch.device("cpu"):  # computed for real even when the model is built on the meta device
            basis = _fourier_basis(config.window)  # [2 * bins, 1, window]
            mel = mel_filterbank(config.window, config.n_mels, sample_rate)  # [M, bins]
        layer.register_buffer("weight", basis, persistent=False)
        self.register_buffer("mel", mel, persistent=False)
        self._register_load_state_dict_pre_hook(_drop_fixed_transforms)
        width = config.channels
        layers: list[nn.Module] = [CausalConv1d(config.n_mels + 1, width, 3), nn.ELU()]
        for stride in config.strides:
            layers += [CausalConv1d(width, width, 2 * stride, stride=stride), nn.ELU(),
                       _Residual(CausalConv1d(width, width, 3)), nn.ELU()]
        layers.append(CausalConv1d(width, dimension, 1))
        self.model = nn.Sequential(*layers)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Level-free log mel and the level: [B, 1, T] -> [B, n_mels + 1, T / hop]."""
        spectrum = self.stft(audio)  # [B, 2 * bins, steps]: real parts, then imaginary parts
        real, imaginary = spectrum.chunk(2, dim=1)  # [B, bins, steps] each
        power = real.square() + imaginary.square()  # [B, bins, steps]
        log_mel = torch.log(torch.einsum("mf,bfs->bms", self.mel, power) + self.config.floor)  # [B, M, steps]
        level = log_mel.mean(dim=1, keepdim=True)  # [B, 1, steps]
        return torch.cat([log_mel - level, level / 10], dim=1)  # [B, M + 1, steps]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # audio: [B, 1, T]
        return self.model(self.features(audio))  # [B, dimension, T // hop_length]


FIXED_TRANSFORMS = ("stft.conv.conv.weight", "mel")  # a SemanticEncoder's computed buffers, by state-dict key


def _drop_fixed_transforms(state: dict, prefix: str, *args: object) -> None:
    """Load hook: ignore the fixed transforms that older checkpoints stored (fp16 copies, in some)."""
    for key in FIXED_TRANSFORMS:
        state.pop(prefix + key, None)


class _Residual(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer(x)
