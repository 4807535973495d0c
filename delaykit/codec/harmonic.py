"""A harmonic-plus-noise decoder for the codec: speech with a pitch, from a source and a filter per 10 ms.

The spectral decoder (``spectral.py``) predicts magnitude and phase of 25 Hz-wide bins every 10 ms. Trained
with spectral losses on a CPU it never learns phases that line up from one window to the next, and at
25 Hz resolution the harmonics of a 100 Hz voice are barely resolved: its speech came out unvoiced
(whispered), with no F0 for a pitch tracker to find. This decoder builds the periodic part from an explicit
F0 instead (a source-filter vocoder in the manner of DDSP and neural homomorphic vocoders), so voicing and
phase coherence come by construction and the network only predicts smooth quantities:

    latents -> FrameTrunk features [B, steps, C] (as the spectral decoder: one step per ``hop`` samples)
      -> F0 (Hz) and a voicing logit per step, a harmonic envelope and a noise envelope (log, per bin)
      -> per step: a band-limited pulse train at F0 (all harmonics below ``harmonic_ceiling`` of Nyquist,
         unit amplitude, closed form), Hann-windowed and FFT'd, times envelope * sigmoid(voicing);
         plus unit-magnitude random-phase noise times the noise envelope
      -> inverse FFT and overlap-add, exactly as the spectral decoder (no added latency)

Frame ``t`` covers samples ``[t * hop, t * hop + window)``; its pulse train has the phase ``psi_t`` at the
frame's centre, and ``psi_{t+1} = psi_t + hop * (omega_t + omega_{t+1}) / 2`` (``omega`` = 2 pi F0 / rate),
so overlapping frames agree where their windows weigh most. The :class:`Oscillator` keeps that phase (and the
frame count that seeds the noise) as explicit streaming state: streaming equals offline decoding.

Training (``delaykit.train.codec``) supervises F0 and voicing with YIN (``delaykit.pitch``) on the target
audio and drives the pulse train with the target F0 where it is voiced (teacher forcing), so the envelopes
learn on the right harmonics from the first step; decoding uses the predicted F0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..streaming import StreamingModule, StreamState
from .spectral import FrameTrunk, SpectralDecoderConfig


def pulse_gain(window: int) -> float:
    """log |FFT| (ortho norm, Hann window of ``window`` samples) of a unit-amplitude harmonic at its bin:
    ``log(sum(hann) / 2 / sqrt(window)) = log(sqrt(window) / 4)`` (2.05 for 960 samples)."""
    return math.log(math.sqrt(window) / 4)


@dataclass(frozen=True)
class HarmonicDecoderConfig(SpectralDecoderConfig):
    """A spectral decoder's trunk with a harmonic-plus-noise output; F0 in Hz within ``[f0_min, f0_max]``."""

    f0_min: float = 50.0
    f0_max: float = 500.0
    f0_start: float = 120.0  # what the F0 head predicts before training
    harmonic_ceiling: float = 0.95  # harmonics stop at this share of the Nyquist frequency


@dataclass
class HarmonicFrames:
    """What the network predicts per step; all ``[B, steps]`` or ``[B, steps, bins]``."""

    f0_hz: torch.Tensor  # [B, steps]
    voicing_logit: torch.Tensor  # [B, steps]
    harmonic_log: torch.Tensor  # [B, steps, bins]: log envelope of the harmonic part
    noise_log: torch.Tensor  # [B, steps, bins]: log envelope of the noise part


@dataclass
class OscillatorState(StreamState):
    """Per item: the pulse train's phase at the last frame's centre, that frame's angular frequency, and the
    number of frames made (the noise's position)."""

    phase: torch.Tensor  # [B] float64, radians in [0, 2 pi)
    omega: torch.Tensor  # [B] float64, radians per sample
    frames: torch.Tensor  # [B] int64

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        reset_mask = reset_mask.to(self.phase.device)
        self.phase[reset_mask] = 0.0
        self.omega[reset_mask] = 0.0
        self.frames[reset_mask] = 0


class Oscillator(StreamingModule[OscillatorState]):
    """F0 per frame ``[B, steps]`` -> (phase at each frame's centre, angular frequency in radians per sample,
    frame index), each ``[B, steps]`` (phase and frequency float64).

    A fresh item starts as if a frame of its first F0 had ended at phase 0."""

    def __init__(self, hop: int, sample_rate: int) -> None:
        super().__init__()
        self.hop = hop
        self.sample_rate = sample_rate

    def init_state(self, batch_size: int) -> OscillatorState:
        device = torch.device("cpu")  # moved to the F0's device by the first call
        return OscillatorState(batch_size, device, torch.zeros(batch_size, dtype=torch.float64),
                               torch.zeros(batch_size, dtype=torch.float64),
                               torch.zeros(batch_size, dtype=torch.int64))

    def forward(self, f0_hz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # f0_hz: [B, steps]
        batch, steps = f0_hz.shape
        omega = 2 * math.pi * f0_hz.double() / self.sample_rate  # [B, steps]
        state = self.state
        if state is None:
            start_phase = omega.new_zeros(batch)
            previous = omega[:, 0]
            start_frame = torch.zeros(batch, dtype=torch.int64, device=omega.device)
        else:
            state.phase, state.omega, state.frames = (state.phase.to(omega.device), state.omega.to(omega.device),
                                                      state.frames.to(omega.device))
            start_phase = state.phase
            previous = torch.where(state.frames > 0, state.omega, omega[:, 0])
            start_frame = state.frames
        before = torch.cat([previous[:, None], omega[:, :-1]], dim=1)  # [B, steps]: omega of each frame's predecessor
        increments = self.hop * (before + omega) / 2  # [B, steps]
        phase = torch.remainder(start_phase[:, None] + increments.cumsum(1), 2 * math.pi)  # [B, steps]
        index = start_frame[:, None] + torch.arange(steps, device=omega.device)  # [B, steps]
        if state is not None:
            keep = state.exec_mask.to(omega.device)
            state.phase = torch.where(keep, phase[:, -1], start_phase)
            state.omega = torch.where(keep, omega[:, -1], state.omega)
            state.frames = torch.where(keep, index[:, -1] + 1, start_frame)
        return phase, omega, index


def pulse_frames(phase: torch.Tensor, omega: torch.Tensor, window: int, ceiling: float) -> torch.Tensor:
    """Band-limited pulse trains ``[B, steps, window]``: ``sum_{k=1..K} cos(k theta(n))`` with
    ``theta(n) = phase + omega * (n - window / 2)`` and ``K`` the harmonics under ``ceiling * pi``, in closed
    form (``sin((K + 1/2) theta) / (2 sin(theta / 2)) - 1/2``). ``phase``, ``omega``: ``[B, steps]`` float64."""
    offsets = torch.arange(window, dtype=torch.float64, device=phase.device) - window / 2  # [window]
    theta = phase[..., None] + omega[..., None] * offsets  # [B, steps, window]
    harmonics = torch.floor(ceiling * math.pi / omega).clamp_min(1)[..., None]  # [B, steps, 1]
    half_sine = torch.sin(theta / 2)
    near_peak = half_sine.abs() < 1e-9
    pulses = torch.sin((harmonics + 0.5) * theta) / (2 * torch.where(near_peak, torch.ones_like(half_sine),
                                                                      half_sine)) - 0.5
    return torch.where(near_peak, harmonics.expand_as(theta), pulses)


def noise_phases(index: torch.Tensor, bins: int) -> torch.Tensor:
    """Uniform random phases ``[B, steps, bins]`` in [0, 2 pi), a fixed function of the frame index
    ``[B, steps]`` and the bin (an integer hash): the same for a frame streamed or decoded offline."""
    mask = 0xFFFFFFFF
    x = (index[..., None] * 1_000_003 + torch.arange(bins, device=index.device)) & mask  # [B, steps, bins]
    for _ in range(2):
        x = ((x ^ (x >> 16)) * 0x45D9F3B) & mask
    x = x ^ (x >> 16)
    return x.double() * (2 * math.pi / 2**32)


class HarmonicDecoder(FrameTrunk):
    """Latents ``[B, dimension, S]`` -> audio ``[B, 1, S * latent_hop]`` (see the module docstring)."""

    config: HarmonicDecoderConfig

    def __init__(self, config: HarmonicDecoderConfig, dimension: int, latent_hop: int, sample_rate: int) -> None:
        super().__init__(config, dimension, latent_hop)
        self.pulse_gain = pulse_gain(config.window)
        self.f0_head = nn.Linear(config.channels, 2)  # log F0 offset, voicing logit
        self.harmonic_head = nn.Linear(config.channels, config.bins)
        self.noise_head = nn.Linear(config.channels, config.bins)
        with torch.no_grad():  # start near silence, as the spectral decoder
            nn.init.zeros_(self.f0_head.weight)
            nn.init.zeros_(self.f0_head.bias)
            self.harmonic_head.bias.fill_(-4.0 - self.pulse_gain)
            self.noise_head.bias.fill_(-4.0)
        self.oscillator = Oscillator(config.hop, sample_rate)

    def frames(self, latent: torch.Tensor) -> HarmonicFrames:
        """The per-step predictions for the latents ``[B, dimension, S]``."""
        cfg = self.config
        x = self.features(latent)  # [B, steps, C]
        log_f0, voicing = self.f0_head(x).unbind(-1)  # [B, steps] each
        log_f0 = (log_f0 + math.log(cfg.f0_start)).clamp(math.log(cfg.f0_min), math.log(cfg.f0_max))
        return HarmonicFrames(log_f0.exp(), voicing, self.harmonic_head(x), self.noise_head(x))

    def render(self, frames: HarmonicFrames, f0_hz: torch.Tensor | None = None) -> torch.Tensor:
        """Audio ``[B, 1, steps * hop]`` from ``frames``, with the pulse train at ``f0_hz [B, steps]`` when
        given (training's target F0), else at the predicted F0."""
        cfg = self.config
        f0 = (frames.f0_hz if f0_hz is None else f0_hz).detach().clamp(cfg.f0_min, cfg.f0_max)  # [B, steps]
        phase, omega, index = self.oscillator(f0)  # [B, steps] each
        window = torch.hann_window(cfg.window, periodic=True, dtype=torch.float64, device=phase.device)
        pulses = (pulse_frames(phase, omega, cfg.window, cfg.harmonic_ceiling) * window).float()  # [B, steps, window]
        source = torch.fft.rfft(pulses, norm="ortho")  # [B, steps, bins]
        gate = torch.sigmoid(frames.voicing_logit)[..., None]  # [B, steps, 1]
        limit = cfg.max_log_magnitude
        harmonic = source * (frames.harmonic_log.clamp(max=limit - self.pulse_gain).exp() * gate)
        noise = torch.polar(frames.noise_log.clamp(max=limit).exp(), noise_phases(index, cfg.bins).float())
        return self.synthesize(harmonic + noise)

    def decode(self, latent: torch.Tensor, f0_hz: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, HarmonicFrames]:
        """(audio ``[B, 1, S * latent_hop]``, the predictions) for the latents ``[B, dimension, S]``."""
        frames = self.frames(latent)
        return self.render(frames, f0_hz), frames

    def forward(self, latent: torch.Tensor) -> torch.Tensor:  # latent: [B, dimension, S]
        return self.decode(latent)[0]  # [B, 1, S * latent_hop]
