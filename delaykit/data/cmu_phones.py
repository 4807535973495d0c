"""flite's and Festival's US English phones (CMU's set) as the espeak-ng phonemes of the same sounds.

The codec's semantic encoder learns from phoneme targets named as espeak-ng names them
(``delaykit.train.phonemes``). flite and Festival's diphone voices print the phones they spoke, with end times,
in CMU's set; this table renames them, so speech of those synthesizers carries the same targets as espeak-ng's.
"""

from __future__ import annotations

import typing as tp

ESPEAK_OF_CMU_PHONE = {
    "aa": "A:", "ae": "a", "ah": "V", "ao": "O:", "aw": "aU", "ax": "@", "axr": "3:", "ay": "aI", "b": "b",
    "ch": "tS", "d": "d", "dh": "D", "eh": "E", "el": "@L", "em": "m", "en": "n", "er": "3:", "ey": "eI",
    "f": "f", "g": "g", "hh": "h", "ih": "I", "ix": "I", "iy": "i:", "jh": "dZ", "k": "k", "l": "l", "m": "m",
    "n": "n", "ng": "N", "ow": "oU", "oy": "OI", "p": "p", "r": "r", "s": "s", "sh": "S", "t": "t", "th": "T",
    "uh": "U", "uw": "u:", "v": "v", "w": "w", "y": "j", "z": "z", "zh": "Z", "pau": "_",
}


def espeak_phonemes(segments: tp.Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Phones ``(CMU name, end seconds)`` in order -> ``(espeak-ng name, start seconds)``; ValueError on a phone
    the table does not know (the caller skips that sentence)."""
    unknown = sorted({phone for phone, _ in segments} - ESPEAK_OF_CMU_PHONE.keys())
    if unknown:
        raise ValueError(f"phones with no espeak-ng equivalent: {unknown}")
    starts = [0.0] + [end for _, end in segments[:-1]]
    return [(ESPEAK_OF_CMU_PHONE[phone], start) for (phone, _), start in zip(segments, starts, strict=True)]
