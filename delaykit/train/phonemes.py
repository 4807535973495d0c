"""Phoneme targets for the codec's semantic codebook: what was said, sound by sound, on a fine time grid.

Mimi makes its first codebook "semantic" by distilling a self-supervised speech model into it. No such model
can be downloaded here, but the synthesizer knows exactly what it said: ``delaykit data synth`` stores each
utterance's espeak phonemes with their start times (manifest rows' ``"phonemes"``). The codec trainer puts a
small classifier on the semantic quantizer's output and asks it, for every codec frame, which phoneme sounds
at each of ``slots`` equal sub-frame instants (4 slots = every 20 ms at 12.5 Hz). The codes then have to carry
the phonetic content, so that they stay the same when the audio moves by a few samples or changes level, which
is what a recognizer or a text-to-speech model built on them needs.

Phoneme names are espeak's, with variant digits and stress marks folded (``@2`` -> ``@``); every pause
(``_``, ``_:``, ``_!`` ...) and everything outside the phonemes is silence, class 0. flite and Festival speech carry
their phones as the espeak-ng phonemes of the same sounds (``delaykit.data.cmu_phones``). Rows without
phonemes (flite and Festival speech made before their phones were kept) get no target (-100).
"""

from __future__ import annotations

import re
import typing as tp

import numpy as np

SILENCE = "_"
IGNORE = -100  # cross-entropy's ignore_index: no phoneme information for this slot


def normalize_phoneme(name: str) -> str:
    """espeak's phoneme name without variant digits and stress marks; pauses become :data:`SILENCE`."""
    if not name or name.startswith("_"):
        return SILENCE
    folded = re.sub(r"[0-9'%,=#]", "", name)
    return folded or SILENCE


class PhonemeInventory:
    """Class ids of the phonemes of a corpus: 0 is silence, then the other names sorted."""

    def __init__(self, names: tp.Iterable[str]):
        others = sorted({normalize_phoneme(n) for n in names} - {SILENCE})
        self.names = [SILENCE, *others]
        self.index = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_rows(cls, rows: tp.Iterable[dict]) -> PhonemeInventory:
        return cls(name for row in rows for name, _ in row.get("phonemes", ()))

    def __len__(self) -> int:
        return len(self.names)

    def id(self, name: str) -> int:
        """Class of an espeak phoneme name; a name this inventory never saw counts as silence."""
        return self.index.get(normalize_phoneme(name), 0)


class PhonemeTimeline:
    """One utterance's phonemes as a step function of time: ``at(times)`` -> class ids."""

    def __init__(self, phonemes: tp.Sequence[tp.Sequence], inventory: PhonemeInventory):
        self.known = bool(phonemes)
        self.starts = np.array([float(start) for _, start in phonemes], dtype=np.float64)  # [P] seconds
        self.classes = np.array([inventory.id(str(name)) for name, _ in phonemes], dtype=np.int64)  # [P]

    def at(self, times: np.ndarray) -> np.ndarray:
        """Class id [N] sounding at each of ``times`` [N] (seconds); silence before the first phoneme,
        :data:`IGNORE` everywhere when the utterance has no phonemes."""
        if not self.known:
            return np.full(times.shape, IGNORE, dtype=np.int64)
        which = np.searchsorted(self.starts, times, side="right") - 1  # [N] index of the phoneme sounding
        return np.where(which >= 0, self.classes[np.maximum(which, 0)], 0)


def slot_targets(timeline: PhonemeTimeline, start_seconds: float, frames: int, frame_seconds: float,
                 slots: int, valid_seconds: float, lookahead_frames: int = 0) -> np.ndarray:
    """Targets [frames, slots] of a crop starting ``start_seconds`` into the utterance: the class at the centre
    of each slot; slots past ``valid_seconds`` (zero padding after the utterance's end) are silence.

    With ``lookahead_frames`` = k, frame t is asked for the sounds of frame t - k: a causal encoder then names
    each sound having heard k frames (k * 80 ms at 12.5 Hz) of what follows it, and its codes trail the audio
    by k frames. Slots that fall before the crop (audio the encoder never heard) get no target."""
    slot_seconds = frame_seconds / slots
    offsets = (np.arange(frames * slots) + 0.5) * slot_seconds - lookahead_frames * frame_seconds  # [F * S]
    targets = timeline.at(start_seconds + offsets)  # [frames * slots]
    targets = np.where((offsets < valid_seconds) | (targets == IGNORE), targets, 0)
    targets = np.where(offsets < 0, IGNORE, targets)
    return targets.reshape(frames, slots)
