"""Reconstruction losses and metrics for codec training: multi-resolution STFT and mel, SI-SNR.

Everything works on waveforms ``[B, C, T]`` (or ``[B, T]``) in fp32 and needs only torch (the mel filter bank
comes from :mod:`delaykit.mel`, so no torchaudio is needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..mel import mel_filterbank


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])  # [B * C, T]


class Spectrogram(nn.Module):
    """Magnitude STFT (Hann window, hop = window / 4) and, optionally, its mel projection."""

    def __init__(self, n_fft: int, sample_rate: int, n_mels: int | None = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = mel_filterbank(n_fft, n_mels, sample_rate) if n_mels else torch.empty(0)
        self.register_buffer("mel_fb", fb, persistent=False)  # [M, F] or empty

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., T]
        """|STFT| / sqrt(sum window^2): white noise of RMS ``r`` reads ~``r`` at every size."""
        spec = torch.stft(_flat(x), self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # [N, F, frames]
        return spec.abs() / self.window.pow(2).sum().sqrt()

    def mel(self, x: torch.Tensor) -> torch.Tensor:  # x: [..., T]
        return torch.matmul(self.mel_fb, self.magnitude(x))  # [N, M, frames]


@dataclass(frozen=True)
class SpectralLossConfig:
    """Windows of the multi-resolution losses and the weight of each term."""

    windows: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    mel_windows: tuple[int, ...] = (256, 512, 1024, 2048)
    n_mels: int = 64  # capped at window / 8 so small windows have no empty filters
    floor: float = 1e-4  # magnitude floor inside the log: -80 dB, far below what matters to the ear
    sample_rate: int = 24_000


class MultiResolutionSpectralLoss(nn.Module):
    """Returns ``(stft, mel)`` losses, each a mean over its resolutions.

    ``stft`` is L1 between log magnitudes plus L1 between magnitudes (the latter normalised by the target's
    mean magnitude, so loud and quiet batches weigh alike); ``mel`` is L1 between log-mel spectra.
    """

    def __init__(self, config: SpectralLossConfig = SpectralLossConfig()) -> None:
        super().__init__()
        self.config = config
        self.stfts = nn.ModuleList(Spectrogram(w, config.sample_rate) for w in config.windows)
        self.mels = nn.ModuleList(
            Spectrogram(w, config.sample_rate, min(config.n_mels, w // 8)) for w in config.mel_windows
        )

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        floor = self.config.floor
        stft_terms = []
        for spec in self.stfts:
            mag_out, mag_ref = spec.magnitude(output), spec.magnitude(target)  # [N, F, frames] each
            log_term = (mag_out.clamp_min(floor).log() - mag_ref.clamp_min(floor).log()).abs().mean()
            lin_term = (mag_out - mag_ref).abs().mean() / mag_ref.mean().clamp_min(floor)
            stft_terms.append(log_term + lin_term)
        mel_terms = []
        for spec in self.mels:
            mel_out, mel_ref = spec.mel(output), spec.mel(target)  # [N, M, frames] each
            mel_terms.append((mel_out.clamp_min(floor).log() - mel_ref.clamp_min(floor).log()).abs().mean())
        return torch.stack(stft_terms).mean(), torch.stack(mel_terms).mean()


# ---------------------------------------------------------------------------------------------------------
# Evaluation metrics


class LogMelDistance(nn.Module):
    """Mean absolute difference of natural-log mel spectra (window 1024, hop 256, 80 mels).

    Magnitudes are normalised as in :class:`Spectrogram` and floored at 1e-4 (-80 dB), so digital silence
    and inaudible residue do not dominate the figure.
    """

    def __init__(self, sample_rate: int = 24_000, n_fft: int = 1024, n_mels: int = 80) -> None:
        super().__init__()
        self.spec = Spectrogram(n_fft, sample_rate, n_mels)

    @torch.no_grad()
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = self.spec.mel(output).clamp_min(1e-4).log()  # [N, M, frames]
        b = self.spec.mel(target).clamp_min(1e-4).log()
        return (a - b).abs().mean()


def si_snr(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB per signal: ``[..., T]`` pairs -> ``[N]``."""
    out, ref = _flat(output).double(), _flat(target).double()  # [N, T]
    out = out - out.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    scale = (out * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * ref  # [N, T]
    noise = out - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return (10 * torch.log10(ratio + eps)).float()


def waveform_l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(output, target)
