"""Whether a TTS model's named voices do what they say: their pitch and speaking rate, measured on the audio.

Each voice setting (a ``VoiceChoice``) speaks the same texts with the same seeds; per setting the report gives
the median fundamental frequency of its voiced frames (pitch steps and timbres should move it; the same voice
should keep it across seeds) and its speaking rate in letters per second from the spoken word times (the
measure the training corpora's rates were binned by, ``delaykit.voice``).

The F0 tracker is YIN (de Cheveigné and Kawahara, 2002) without its refinements: the cumulative mean
normalised difference of 40 ms frames every 10 ms, its first dip under a threshold between 60 and 400 Hz.
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np

from ..engine import Engine
from ..modes.tts import SynthesisOptions, Synthesizer
from ..voice import VoiceChoice, letters_per_second

F0_RANGE = (60.0, 400.0)  # Hz: speaking voices
YIN_THRESHOLD = 0.2
SILENCE_DB = -35.0  # frames this far under the loudest frame are not voiced


def frame_f0(frame: np.ndarray, sample_rate: int, fmin: float = F0_RANGE[0], fmax: float = F0_RANGE[1]
             ) -> float | None:
    """F0 in Hz of one frame [N] (N > sample_rate / fmin), or None where it has no clear period."""
    tau_max = int(sample_rate / fmin)
    tau_min = max(int(sample_rate / fmax), 2)
    window = frame.shape[0] - tau_max
    if window <= tau_min:
        raise ValueError(f"a frame of {frame.shape[0]} samples is too short for {fmin} Hz")
    x = frame.astype(np.float64)
    cross = np.correlate(x, x[:window], mode="valid")  # [tau_max + 1]: sum_j x[j] x[j + tau]
    squares = np.concatenate([[0.0], np.cumsum(x * x)])  # [N + 1]
    taus = np.arange(tau_max + 1)
    shifted_energy = squares[taus + window] - squares[taus]  # [tau_max + 1]: sum_j x[j + tau]^2
    difference = squares[window] + shifted_energy - 2 * cross  # [tau_max + 1]
    running = np.cumsum(difference[1:])  # [tau_max]
    normalised = np.ones_like(difference)
    normalised[1:] = difference[1:] * taus[1:] / np.maximum(running, 1e-12)
    below = np.nonzero(normalised[tau_min:] < YIN_THRESHOLD)[0]
    if below.size == 0:
        return None
    tau = tau_min + int(below[0])
    while tau + 1 <= tau_max and normalised[tau + 1] < normalised[tau]:  # down to the dip's bottom
        tau += 1
    return sample_rate / tau


def f0_track(audio: np.ndarray, sample_rate: int, frame_seconds: float = 0.04, hop_seconds: float = 0.01
             ) -> np.ndarray:
    """F0 in Hz of each frame of ``audio`` [T] (NaN where unvoiced or silent)."""
    size, hop = round(frame_seconds * sample_rate), round(hop_seconds * sample_rate)
    starts = range(0, max(audio.shape[0] - size, 0) + 1, hop) if audio.shape[0] >= size else range(0)
    frames = [audio[start:start + size] for start in starts]
    if not frames:
        return np.zeros(0)
    levels = np.array([np.sqrt(np.mean(np.square(f, dtype=np.float64))) + 1e-12 for f in frames])
    loud = 20 * np.log10(levels / levels.max()) > SILENCE_DB
    track = np.full(len(frames), np.nan)
    for index in np.nonzero(loud)[0]:
        f0 = frame_f0(frames[index], sample_rate)
        if f0 is not None:
            track[index] = f0
    return track


def median_f0(audio: np.ndarray, sample_rate: int) -> float | None:
    """Median F0 in Hz over the voiced frames of ``audio`` [T]; None if under a tenth of its frames are
    voiced."""
    track = f0_track(audio, sample_rate)
    voiced = track[np.isfinite(track)]
    if voiced.size == 0 or voiced.size < 0.1 * track.size:
        return None
    return float(np.median(voiced))


def evaluate_voices(engine: Engine, texts: tp.Sequence[str], choices: tp.Mapping[str, VoiceChoice],
                    options: SynthesisOptions | None = None, seed: int = 0) -> dict:
    """For each named setting of ``choices``: the median F0 (Hz) of each text's audio, and their median, and
    the speaking rate in letters per second. Text i is sampled with seed ``seed + i`` for every setting."""
    options = options or SynthesisOptions()
    sample_rate = engine.codec.sample_rate
    report: dict = {"texts": len(texts), "seed": seed, "voices": {}}
    for label, choice in choices.items():
        pitches, rates = [], []
        for index, text in enumerate(texts):
            voiced = dataclasses.replace(options, seed=seed + index, voice=choice.voice, pitch=choice.pitch,
                                         rate=choice.rate)
            audio, words = Synthesizer(engine, voiced).synthesize(text)
            pitches.append(median_f0(audio.float().cpu().numpy(), sample_rate))
            rates.append(letters_per_second(words))
        found = [p for p in pitches if p is not None]
        report["voices"][label] = {
            **{key: value for key, value in dataclasses.asdict(choice).items() if value is not None},
            "f0_median_hz": round(float(np.median(found)), 1) if found else None,
            "f0_per_text_hz": [None if p is None else round(p, 1) for p in pitches],
            "letters_per_second": round(float(np.median(rates)), 2),
        }
    return report
