"""Fundamental frequency (F0) tracking: YIN on many frames at once.

YIN (de Cheveigné and Kawahara, 2002) without its refinements: per frame the difference function
``d(tau) = sum_j (x[j] - x[j + tau])^2`` over the first ``size - tau_max`` samples, its cumulative mean
normalised form ``d'(tau) = d(tau) * tau / sum_{1..tau} d``, and the bottom of the first dip of ``d'`` under a
threshold between ``fmax`` and ``fmin``; no dip, no F0. Frames quieter than ``silence_db`` under the loudest
frame of their signal count as unvoiced.

Everything is batched tensor code (the correlations by FFT), so it is cheap enough to make F0 targets for
every training batch of the codec's harmonic decoder and to measure the pitch of synthesized speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PitchConfig:
    """What counts as a voice: the F0 range, the YIN threshold and the silence floor."""

    fmin: float = 60.0  # Hz
    fmax: float = 400.0  # Hz
    threshold: float = 0.2  # on the normalised difference
    silence_db: float = -35.0  # frames this far under their signal's loudest frame are unvoiced
    frame_seconds: float = 0.04
    hop_seconds: float = 0.01


def frames_f0(frames: torch.Tensor, sample_rate: int, config: PitchConfig = PitchConfig()) -> torch.Tensor:
    """F0 in Hz of each frame ``[..., N]`` (N > sample_rate / fmin): ``[...]``, NaN where it has no clear
    period (the silence floor is not applied here: see :func:`f0_track`)."""
    tau_max = int(sample_rate / config.fmin)
    tau_min = max(int(sample_rate / config.fmax), 2)
    size = frames.shape[-1]
    window = size - tau_max
    if window <= tau_min:
        raise ValueError(f"a frame of {size} samples is too short for {config.fmin} Hz")
    x = frames.reshape(-1, size).double()  # [F, N]
    n_fft = 1 << (2 * size - 1).bit_length()
    spectrum = torch.fft.rfft(x, n_fft)  # [F, n_fft / 2 + 1]
    head = torch.fft.rfft(x[:, :window], n_fft)
    cross = torch.fft.irfft(spectrum * head.conj(), n_fft)[:, : tau_max + 1]  # [F, tau_max + 1]: sum_j x_j x_{j+tau}
    squares = torch.nn.functional.pad(x.square().cumsum(-1), (1, 0))  # [F, N + 1]
    taus = torch.arange(tau_max + 1, device=x.device)
    shifted_energy = squares[:, taus + window] - squares[:, taus]  # [F, tau_max + 1]: sum_j x_{j+tau}^2
    difference = squares[:, window:window + 1] + shifted_energy - 2 * cross  # [F, tau_max + 1]
    running = difference[:, 1:].cumsum(-1).clamp_min(1e-12)  # [F, tau_max]
    normalised = torch.cat([torch.ones_like(difference[:, :1]), difference[:, 1:] * taus[1:] / running], -1)
    searched = normalised[:, tau_min:]  # [F, tau_max + 1 - tau_min]
    below = searched < config.threshold
    voiced = below.any(-1)  # [F]
    first = below.float().argmax(-1)  # [F]: the first lag under the threshold
    # From there down to the dip's bottom: the first lag after which d' rises again (or the last lag).
    rising = torch.cat([searched[:, 1:] >= searched[:, :-1], torch.ones_like(below[:, :1])], -1)
    lags = torch.arange(searched.shape[-1], device=x.device)
    bottom = (rising & (lags >= first[:, None])).float().argmax(-1)  # [F]
    f0 = sample_rate / (tau_min + bottom).double()
    f0 = torch.where(voiced, f0, torch.full_like(f0, float("nan")))
    return f0.to(frames.dtype).view(frames.shape[:-1])


def f0_track(audio: torch.Tensor, sample_rate: int, config: PitchConfig = PitchConfig()) -> torch.Tensor:
    """F0 in Hz of frames of ``audio [..., T]`` every ``hop_seconds``, frame ``t`` covering samples
    ``[t * hop, t * hop + size)``: ``[..., frames]``, NaN where unvoiced or silent."""
    size, hop = round(config.frame_seconds * sample_rate), round(config.hop_seconds * sample_rate)
    if audio.shape[-1] < size:
        return audio.new_zeros(*audio.shape[:-1], 0)
    frames = audio.unfold(-1, size, hop)  # [..., frames, size]
    levels = frames.double().square().mean(-1).sqrt() + 1e-12  # [..., frames]
    loud = 20 * torch.log10(levels / levels.amax(-1, keepdim=True)) > config.silence_db
    f0 = frames_f0(frames, sample_rate, config)
    return torch.where(loud, f0, torch.full_like(f0, float("nan")))
