"""Synthetic speech corpora from the espeak-ng command line: varied voices, rates, pitches, levels and noise.

Each utterance is a generated sentence (:mod:`delaykit.data.sentences`) spoken by a random English voice
and variant (``espeak-ng -v VOICE+VARIANT -s RATE -p PITCH``), brought down from espeak's near-full-scale
level to a random loudness, lightly augmented (white/pink noise at a random SNR, band limiting like a phone
line), resampled 22050 -> 24000 Hz and written as 16-bit mono WAV. ``manifest.jsonl`` holds one line per
utterance: ``{"path", "text", "voice", "rate", "pitch", "duration"}`` with paths relative to the manifest.

The ``heldout`` split uses voices and variants that the ``train`` split never does (and the held-out names and
places of the sentence generator), so evaluation measures generalisation to unseen speakers and words.
Synthesis is deterministic given the seed: each utterance draws its parameters from its own seeded RNG.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ..audio import read_audio, resample, write_audio
from .sentences import SentenceConfig, SentenceGenerator

ESPEAK_RATE = 22_050
# English voices that need no MBROLA database (the mb/* ones do, and it is not packaged).
TRAIN_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                "en-us-nyc")
HELDOUT_VOICES = ("en-029",)
# Voice variants (files in espeak-ng-data/voices/!v); the robotic and demonic ones are left out.
TRAIN_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m7", "m8", "f1", "f2", "f3", "f5", "adam", "Alex", "Alicia",
    "Andy", "announcer", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "edward", "fast",
    "grandma", "grandpa", "iven", "iven2", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "linda",
    "max", "michel", "norbert", "paul", "quincy", "rob", "robert", "shelby", "steph", "travis", "victor",
    "Annie", "Lee", "Mike", "Hugo", "Denis", "Gene", "Jacky", "Michael", "whisper",
)
HELDOUT_VARIANTS = ("m6", "f4", "anika", "steph2", "iven3", "klatt4", "Andrea", "Marco")


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize and how to vary it."""

    hours: float = 1.0
    seed: int = 0
    split: str = "train"  # train | heldout
    sample_rate: int = 24_000
    rate: tuple[int, int] = (120, 260)  # espeak words per minute
    pitch: tuple[int, int] = (20, 80)
    level_db: tuple[float, float] = (-32.0, -16.0)  # target RMS in dBFS
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (15.0, 45.0)
    bandlimit_prob: float = 0.25
    workers: int = 2

    @property
    def voices(self) -> tuple[str, ...]:
        return HELDOUT_VOICES + TRAIN_VOICES if self.split == "heldout" else TRAIN_VOICES

    @property
    def variants(self) -> tuple[str, ...]:
        return HELDOUT_VARIANTS if self.split == "heldout" else TRAIN_VARIANTS


@dataclass
class Utterance:
    index: int
    text: str
    voice: str
    rate: int
    pitch: int
    seed: int


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    """Synthesize ``text`` with the espeak-ng CLI; float32 samples at 22050 Hz."""
    with tempfile.TemporaryDirectory(prefix="delaykit-espeak-") as tmp:
        path = Path(tmp) / "out.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(path), "--", text]
        subprocess.run(cmd, check=True, capture_output=True)
        audio, sr = read_audio(path)
    if sr != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {sr} Hz, expected {ESPEAK_RATE}")
    return audio[0] if audio.ndim == 2 else audio  # [T]


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))  # [n // 2 + 1]
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.shape[0]), 1.0))
    noise = np.fft.irfft(spectrum, n)  # [n]
    return noise / (noise.std() + 1e-12)


def _band_limit(x: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    """Keep ``low``..``high`` Hz with smooth (raised-cosine, one octave wide) edges, by FFT."""
    spectrum = np.fft.rfft(x)  # [T // 2 + 1]
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / rate)
    octave_up = np.clip(np.log2(np.maximum(freqs, 1.0) / low) + 0.5, 0.0, 1.0)
    octave_down = np.clip(np.log2(high / np.maximum(freqs, 1.0)) + 0.5, 0.0, 1.0)
    gain = np.sin(0.5 * math.pi * octave_up) ** 2 * np.sin(0.5 * math.pi * octave_down) ** 2
    return np.fft.irfft(spectrum * gain, x.shape[0]).astype(np.float32)


def render(utt: Utterance, config: SynthConfig) -> np.ndarray:
    """Speech for one utterance at ``config.sample_rate``, levelled and augmented."""
    rng = np.random.default_rng(utt.seed)
    audio = espeak(utt.text, utt.voice, utt.rate, utt.pitch).astype(np.float64)  # [T] at 22050 Hz
    rms = math.sqrt(float(np.mean(audio**2))) + 1e-9
    audio *= 10 ** (rng.uniform(*config.level_db) / 20) / rms
    if rng.random() < config.bandlimit_prob:
        audio = _band_limit(audio, ESPEAK_RATE, rng.uniform(150, 400), rng.uniform(3400, 7000))
    if rng.random() < config.noise_prob:
        noise = _pink_noise(rng, audio.shape[0]) if rng.random() < 0.5 else rng.standard_normal(audio.shape[0])
        speech_rms = math.sqrt(float(np.mean(audio**2))) + 1e-9
        audio = audio + noise * speech_rms * 10 ** (-rng.uniform(*config.snr_db) / 20)
    audio = resample(audio.astype(np.float32), ESPEAK_RATE, config.sample_rate)  # [T'] at 24 kHz
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio *= 0.99 / peak
    return audio


def plan(config: SynthConfig, count: int, start: int = 0) -> list[Utterance]:
    """Utterances ``start .. start + count - 1``; a given index always gets the same text and voice."""
    sentence_seed = config.seed * 1_000_003 + (7 if config.split == "heldout" else 0)
    sentences = SentenceGenerator(SentenceConfig(seed=sentence_seed, split=config.split))
    rng = np.random.default_rng([config.seed, 1 if config.split == "heldout" else 0])
    out = []
    for index in range(start + count):
        text = sentences.next()
        voice = str(rng.choice(config.voices))
        variant = str(rng.choice(config.variants))
        rate = int(rng.integers(config.rate[0], config.rate[1] + 1))
        pitch = int(rng.integers(config.pitch[0], config.pitch[1] + 1))
        seed = int(rng.integers(2**31))
        if index >= start:
            out.append(Utterance(index, text, f"{voice}+{variant}" if variant else voice, rate, pitch, seed))
    return out


def _work(args: tuple[Utterance, SynthConfig, str]) -> dict:
    utt, config, out_dir = args
    audio = render(utt, config)
    rel = Path("wavs") / f"{utt.index // 1000:03d}" / f"{utt.index:06d}.wav"
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, audio, config.sample_rate)
    return {"path": str(rel), "text": utt.text, "voice": utt.voice, "rate": utt.rate, "pitch": utt.pitch,
            "duration": round(audio.shape[0] / config.sample_rate, 4)}


def synthesize(out_dir: str | Path, config: SynthConfig, log=sys.stderr) -> Path:
    """Fill ``out_dir`` with ``config.hours`` of speech and its manifest; returns the manifest path.

    Utterances are planned in batches until the total duration reaches the target. An existing manifest in
    ``out_dir`` is overwritten.
    """
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    target = config.hours * 3600.0
    total, done, start_time = 0.0, 0, time.monotonic()
    batch = 64 * max(1, config.workers)
    with open(manifest, "w", encoding="utf-8") as f, Pool(config.workers) as pool:
        while total < target:
            jobs = [(u, config, str(out_dir)) for u in plan(config, batch, start=done)]
            for row in pool.imap(_work, jobs):
                if total >= target:
                    break
                f.write(json.dumps(row) + "\n")
                total += row["duration"]
                done += 1
            f.flush()
            elapsed = time.monotonic() - start_time
            print(f"synth: {done} utterances, {total / 3600:.2f} h, {total / max(elapsed, 1e-9):.0f}x real time",
                  file=log, flush=True)
    (out_dir / "synth_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return manifest


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a manifest with ``path`` made absolute."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["path"] = str(path.parent / row["path"])
            rows.append(row)
    return rows
