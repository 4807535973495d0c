"""The mel scale (HTK formula) and a triangular mel filter bank, built with torch alone.

Shared by the codec's semantic encoder (its log-mel features are part of the model) and the spectral training
losses and metrics, so that neither depends on the other and no torchaudio is needed.
"""

from __future__ import annotations

import torch


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` evenly spaced on the mel scale."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # [F]
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                                     dtype=torch.float64))  # [M + 2]
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # [M, 1] each
    rising = (freqs[None] - lower) / (centre - lower)  # [M, F]
    falling = (upper - freqs[None]) / (upper - centre)  # [M, F]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()
