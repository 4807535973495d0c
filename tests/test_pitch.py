"""The YIN F0 tracker: the pitch of voiced sounds, none in noise or silence, and batched like one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from delaykit.evaluation.voices import median_f0
from delaykit.pitch import f0_track, frames_f0

RATE = 24_000


def buzz(f0: float, seconds: float = 1.0) -> np.ndarray:
    """A buzz with falling harmonics, as a voice has; the first harmonic is not the loudest at 230 Hz."""
    t = np.arange(int(seconds * RATE)) / RATE
    return sum((0.6 if k == 2 else 1.0 / k) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 8)).astype(np.float32)


def test_finds_the_pitch_of_a_voiced_sound_and_none_in_noise():
    for f0 in (95.0, 140.0, 230.0):
        assert abs(median_f0(buzz(f0), RATE) - f0) < 0.03 * f0
    noise = np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    assert median_f0(noise, RATE) is None


def test_silence_around_a_tone_is_not_voiced():
    tone = np.concatenate([np.zeros(RATE // 2), buzz(120.0, 0.5), np.zeros(RATE // 2)]).astype(np.float32)
    track = f0_track(torch.from_numpy(tone), RATE).numpy()  # [frames]: one every 10 ms
    assert np.isnan(track[:40]).all() and np.isnan(track[-40:]).all()
    assert np.nanmedian(track) == pytest.approx(120, rel=0.03)


def test_batched_frames_give_what_each_frame_gives_alone():
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(np.stack([buzz(f)[:960] for f in (90.0, 150.0, 210.0)])
                              + 0.05 * rng.standard_normal((3, 960)).astype(np.float32))  # [3, 960]
    together = frames_f0(frames, RATE)  # [3]
    alone = torch.stack([frames_f0(frame, RATE) for frame in frames])
    torch.testing.assert_close(together, alone)
    assert torch.isfinite(together).all()
