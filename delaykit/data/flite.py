"""Evaluation speech from flite voices that no delaykit model ever trains on (``slt``, ``awb``, ``rms``).

The held-out sets of ``delaykit data synth`` are still espeak-ng; a recogniser that only learnt espeak can
look good there and fail on any other voice. This module speaks held-out sentences with flite's
``slt`` (female, US), ``awb`` (male, Scottish) and ``rms`` (male, US) voices, which are reserved for
evaluation: nothing in delaykit trains or tunes on them. Rows carry ``text`` and no word alignments (WER
needs none); audio is resampled to 24 kHz and levelled like the espeak corpus.

It also speaks for ``delaykit data synth`` with flite's training voices (``kal``, ``kal16``): each word's times
and each phone, named as the espeak-ng phoneme of the same sound (:func:`flite_speech`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import typing as tp
from pathlib import Path

import numpy as np

from ..audio import read_audio, resample, write_audio
from .cmu_phones import espeak_phonemes
from .manifest import MANIFEST_NAME, manifest_writer
from .sentences import SentenceConfig, SentenceGenerator

EVALUATION_VOICES = ("slt", "awb", "rms")


def flite_available() -> bool:
    return shutil.which("flite") is not None


def flite(text: str, voice: str) -> tuple[np.ndarray, int]:
    """``text`` spoken by flite's ``voice``: mono float32 samples and their rate."""
    with tempfile.TemporaryDirectory(prefix="delaykit-flite-") as tmp:
        path = Path(tmp) / "out.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
        audio, rate = read_audio(path)
    return audio[0], rate


def synthesize_flite(out_dir: str | Path, count: int, seed: int = 1, voices: tuple[str, ...] = EVALUATION_VOICES,
                     sample_rate: int = 24_000, level_db: float = -24.0) -> Path:
    """``count`` held-out sentences, voices in turn, as WAVs and ``manifest.jsonl`` in ``out_dir``."""
    if not flite_available():
        raise RuntimeError("flite is not installed (apt-get install flite)")
    out_dir = Path(out_dir)
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    sentences = SentenceGenerator(SentenceConfig(seed=seed * 1_000_003 + 7, split="heldout"))
    with manifest_writer(out_dir) as f:
        for index in range(count):
            text, voice = sentences.next(), voices[index % len(voices)]
            audio, rate = flite(text, voice)
            audio = audio.astype(np.float64) * 10 ** (level_db / 20) / (np.sqrt(np.mean(audio**2)) + 1e-9)
            audio = resample(audio.astype(np.float32), rate, sample_rate)
            rel = Path("wavs") / f"{index:06d}.wav"
            write_audio(out_dir / rel, audio, sample_rate)
            row = {"path": str(rel), "text": text, "voice": f"flite-{voice}",
                   "duration": round(audio.shape[0] / sample_rate, 4)}
            f.write(json.dumps(row) + "\n")
    return out_dir / MANIFEST_NAME


def _flite_phones(args: list[str]) -> list[tuple[str, float | None]]:
    """flite's printed segments: (phone, end time or None)."""
    out = subprocess.run(["flite", *args, "-o", "none"], check=True, capture_output=True, text=True).stdout
    segments = []
    for item in out.split():
        phone, _, end = item.partition(":")
        segments.append((phone, float(end) if end else None))
    return segments


def flite_speech(text: str, voice: str, options: tp.Sequence[str] = ()
                 ) -> tuple[np.ndarray, int, list[tuple[str, float, float]], list[tuple[str, float]]]:
    """``text`` spoken by flite's ``voice`` with each whitespace-separated word's (start, end) in seconds, and
    every phone as the espeak-ng phoneme of that sound with its start (``delaykit.data.cmu_phones``; pauses ``_``).

    flite prints every phone's end time (``-psdur``) but not which word it belongs to; each word's phone count
    comes from speaking it alone (its lexicon entry), and the sentence's phones are shared out in order. Pauses
    are not phones of any word, so a word ends where its last phone does. Raises ValueError when the counts do
    not add up (a pronunciation that changes in context), so the caller can skip that sentence."""
    words = text.split()
    counts = [sum(1 for phone, _ in _flite_phones([*options, "-voice", voice, "-ps", "-t", word]) if phone != "pau")
              for word in words]
    with tempfile.TemporaryDirectory(prefix="delaykit-flite-") as tmp:
        path = Path(tmp) / "out.wav"
        out = subprocess.run(["flite", *options, "-voice", voice, "-psdur", "-t", text, "-o", str(path)],
                             check=True, capture_output=True, text=True).stdout
        audio, rate = read_audio(path)
    segments = [(phone, float(end)) for phone, _, end in (item.partition(":") for item in out.split())]
    starts = [0.0] + [end for _, end in segments[:-1]]
    spoken = [(start, end) for (phone, end), start in zip(segments, starts, strict=True) if phone != "pau"]
    if sum(counts) != len(spoken):
        raise ValueError(f"flite spoke {len(spoken)} phones for {sum(counts)} in the words of {text!r}")
    timed, index = [], 0
    for word, count in zip(words, counts, strict=True):
        if count == 0:
            raise ValueError(f"flite gives no phones for {word!r}")
        timed.append((word, spoken[index][0], spoken[index + count - 1][1]))
        index += count
    return audio[0], rate, timed, espeak_phonemes(segments)
