"""Whether a TTS model's named voices do what they say: their pitch and speaking rate, measured on the audio.

Each voice setting (a ``VoiceChoice``) speaks the same texts with the same seeds; per setting the report gives
the median fundamental frequency of its voiced frames (pitch steps and timbres should move it; the same voice
should keep it across seeds) and its speaking rate in letters per second from the spoken word times (the
measure the training corpora's rates were binned by, ``delaykit.voice``).

The F0 tracker is :func:`delaykit.pitch.f0_track` (YIN on 40 ms frames every 10 ms, 60-400 Hz).
"""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np
import torch

from ..engine import Engine
from ..modes.tts import SynthesisOptions, Synthesizer
from ..pitch import f0_track
from ..voice import VoiceChoice, letters_per_second


def median_f0(audio: np.ndarray, sample_rate: int) -> float | None:
    """Median F0 in Hz over the voiced frames of ``audio`` [T]; None if under a tenth of its frames are
    voiced."""
    track = f0_track(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), sample_rate).numpy()
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
