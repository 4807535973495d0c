"""Random fixed-length crops from an in-memory audio corpus, with a resumable seeded position.

:class:`AudioCorpus` holds every utterance of one or more manifests in one int16 buffer (3 h of 24 kHz
audio is ~500 MB). :class:`CropSampler` draws batches ``[B, 1, L]`` of random crops: each batch picks a
length ``L`` (a whole number of frames), then for each item an utterance (with probability proportional to
its duration) and a start inside it; items shorter than ``L`` are zero-padded at the end. Its whole position
in the data is the state of one NumPy generator, so ``state()`` / ``set_state()`` resume a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio
from .synth import read_manifest


def _to_int16(signal: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16 (clipped)."""
    return np.round(np.clip(signal, -1, 1) * 32767).astype(np.int16)


class AudioCorpus:
    """All utterances of the given manifests (or directories holding ``manifest.jsonl``) at one rate."""

    def __init__(self, chunks: list[np.ndarray], rows: list[dict], sample_rate: int = 24_000) -> None:
        """``chunks``: int16 mono utterances; ``rows``: their manifest rows (same order)."""
        if not chunks:
            raise ValueError("an audio corpus needs at least one utterance")
        self.sample_rate = sample_rate
        self.lengths = np.array([c.shape[0] for c in chunks], dtype=np.int64)  # [N]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])  # [N]
        self.samples = np.concatenate(chunks)  # [sum of lengths] int16
        self.rows = rows

    @classmethod
    def from_manifests(cls, sources: list[str | Path], sample_rate: int = 24_000) -> AudioCorpus:
        rows = [row for source in sources for row in read_manifest(source)]
        if not rows:
            raise ValueError(f"no utterances in {[str(s) for s in sources]}")
        # Each file becomes int16 as it is read: a float32 copy of every file at once would need twice the memory.
        return cls([_to_int16(load_audio(row["path"], sample_rate)) for row in rows], rows, sample_rate)

    @classmethod
    def from_arrays(cls, signals: list[np.ndarray], rows: list[dict] | None = None,
                    sample_rate: int = 24_000) -> AudioCorpus:
        """From float mono signals ``[T]`` in [-1, 1]."""
        chunks = [_to_int16(x) for x in signals]
        return cls(chunks, rows if rows is not None else [{} for _ in chunks], sample_rate)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / self.sample_rate

    def utterance(self, index: int) -> np.ndarray:
        start = self.offsets[index]
        return self.samples[start: start + self.lengths[index]].astype(np.float32) / 32767.0  # [T]


@dataclass(frozen=True)
class CropConfig:
    batch_size: int = 8
    min_frames: int = 13  # crop length range, in codec frames (13 x 1920 samples = 1.04 s at 24 kHz)
    max_frames: int = 25  # 25 x 1920 = 2.0 s
    gain_db: tuple[float, float] = (-6.0, 3.0)  # random level change per item
    # Random speed change per item (speed perturbation): an item reads ``speed`` times as many samples as it
    # holds, resampled, which raises pitch and formants and shortens sounds by that factor, like a shorter
    # vocal tract speaking faster. (1, 1) reads the samples as they are and draws nothing.
    speed: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class Crop:
    """Where one item of a batch came from: utterance ``index``, ``start`` sample in it, ``length`` samples of
    it read (the rest of the item is zero padding), played ``speed`` times as fast (the item holds ``length /
    speed`` of its samples)."""

    index: int
    start: int
    length: int
    speed: float = 1.0


class CropSampler:
    """Seeded random crops; ``next_batch()`` -> float32 tensor ``[B, 1, frames * frame_size]``; the crops of the
    latest batch stay in ``last_crops`` (for targets aligned with the audio, e.g. phonemes)."""

    def __init__(self, corpus: AudioCorpus, frame_size: int, config: CropConfig, seed: int = 0) -> None:
        self.corpus = corpus
        self.frame_size = frame_size
        self.config = config
        self.rng = np.random.default_rng(seed)
        self._weights = corpus.lengths / corpus.lengths.sum()  # [N]
        self.last_crops: list[Crop] = []

    def next_batch(self) -> torch.Tensor:
        cfg = self.config
        length = int(self.rng.integers(cfg.min_frames, cfg.max_frames + 1)) * self.frame_size
        batch = np.zeros((cfg.batch_size, 1, length), dtype=np.float32)
        picks = self.rng.choice(len(self.corpus), size=cfg.batch_size, p=self._weights)  # [B]
        self.last_crops = []
        for i, index in enumerate(picks):
            speed = float(self.rng.uniform(*cfg.speed)) if cfg.speed != (1.0, 1.0) else 1.0
            span = round(length * speed)  # source samples the item's length holds
            n = int(self.corpus.lengths[index])
            start = int(self.rng.integers(0, max(n - span, 0) + 1))
            take = min(span, n - start)
            offset = int(self.corpus.offsets[index]) + start
            gain = 10 ** (self.rng.uniform(*cfg.gain_db) / 20) / 32767.0
            source = self.corpus.samples[offset: offset + take]  # [take] int16
            if speed != 1.0:
                source = _resample(source, speed)[:length]  # [<= length]: ceil(take / speed) may overshoot by one
            batch[i, 0, :source.shape[0]] = source * gain
            self.last_crops.append(Crop(int(index), start, take, speed))
        return torch.from_numpy(np.clip(batch, -1.0, 1.0))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def _resample(samples: np.ndarray, speed: float) -> np.ndarray:
    """``samples`` [T] played ``speed`` times as fast: [ceil(T / speed)] float32, linearly interpolated (for
    speeds near 1 the lost top of the band matters little to a mel front end)."""
    positions = np.arange(int(np.ceil(samples.shape[0] / speed))) * speed  # [T / speed] source positions
    return np.interp(positions, np.arange(samples.shape[0]), samples.astype(np.float32)).astype(np.float32)
