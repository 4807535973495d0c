"""Evaluation speech from flite voices that no delaykit model ever trains on (``slt``, ``awb``, ``rms``).

The held-out sets of ``delaykit data synth`` are still espeak-ng; a recogniser that only learnt espeak can
look good there and fail on any other voice. This module speaks held-out sentences with flite's
``slt`` (female, US), ``awb`` (male, Scottish) and ``rms`` (male, US) voices, which are reserved for
evaluation: nothing in delaykit trains or tunes on them. Rows carry ``text`` and no word alignments (WER
needs none); audio is resampled to 24 kHz and levelled like the espeak corpus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..audio import read_audio, resample, write_audio
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
    manifest = out_dir / "manifest.jsonl"
    with open(manifest, "w", encoding="utf-8") as f:
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
    return manifest
