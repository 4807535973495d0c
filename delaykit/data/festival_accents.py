"""Festival's voices of other languages reading English sentences: new vocal tracts for the phonetic front end.

The English training synthesizers here are espeak-ng's formant voices and three diphone men (flite's and
Festival's kal, Festival's ked); no woman's voice is recorded speech. Debian's Festival voices for other
languages are: an Italian woman and man (``lp_diphone``, ``pc_diphone``), a Catalan woman (``upc_ca_ona_hts``,
an HTS voice, the kind of statistical synthesis flite's evaluation voices use), a Finnish woman
(``suo_fi_lj_diphone``) and a Czech woman (``czech_dita``). Given an English sentence, each reads it with its own
language's letter-to-sound rules ("leaves" -> l e a v e s): accented English, whose words are **not** what
was said, but whose phones are exactly what each voice printed it spoke. Renamed here as the nearest espeak-ng
English phonemes (consonants mostly as they are; vowels by quality: Italian /a/ as the PALM vowel ``A:``, /e/ as
``eI``, /o/ as ``oU``; a Finnish /y/, which English lacks, as ``u:``), they are phoneme targets for the codec's
semantic encoder (``delaykit.train.phonemes``), and nothing else: corpora rows of these voices carry
``"phonemes_only": true``, and ``delaykit data encode`` refuses them (an LM must not learn their words).
"""

from __future__ import annotations

import typing as tp

# Vowels shared by several languages' phone sets, renamed once: stress marks (a1, E1) are dropped before lookup.
_VOWELS = {"a": "A:", "e": "eI", "E": "E", "i": "i:", "o": "oU", "O": "O:", "u": "u:", "ax": "@"}
_CONSONANTS = {name: name for name in ("p", "t", "k", "b", "d", "g", "f", "v", "s", "z", "S", "Z", "h",
                                       "m", "n", "l", "r", "j", "w", "tS", "dZ")}
_PAUSES = {"#": "_", "##": "_", "pau": "_", "_": "_"}

# Per voice: its language's phone names (without stress digits or Finnish length marks) -> espeak-ng's.
ITALIAN = {**_VOWELS, **_CONSONANTS, **_PAUSES,
           "ts": "s", "dz": "z", "J": "n", "ng": "N", "nf": "m", "L": "l"}
CATALAN = {**_VOWELS, **_CONSONANTS, **_PAUSES, "J": "n", "L": "l", "rr": "r"}
FINNISH = {**_CONSONANTS, **_PAUSES, "a": "A:", "e": "E", "i": "i:", "o": "oU", "u": "u:", "y": "u:",
           "@": "a", "7": "3:", "&": "@", "T": "T", "D": "D", "N": "N", "L": "l"}
CZECH = {**_CONSONANTS, **_PAUSES, "a": "A:", "e": "E", "i": "i:", "o": "oU", "u": "u:", "c": "s",
         "c~": "tS", "ch": "h", "d~": "d", "dz": "z", "dz~": "dZ", "n*": "N", "n~": "n", "r~": "r", "r~*": "r",
         "s~": "S", "t~": "t", "z~": "Z"}


class AccentVoice(tp.NamedTuple):
    language: str
    package: str  # the Debian package that installs it
    phones: dict[str, str]


ACCENT_VOICES = {
    "lp_diphone": AccentVoice("Italian", "festvox-italp16k", ITALIAN),
    "pc_diphone": AccentVoice("Italian", "festvox-itapc16k", ITALIAN),
    "upc_ca_ona_hts": AccentVoice("Catalan", "festvox-ca-ona-hts", CATALAN),
    "suo_fi_lj_diphone": AccentVoice("Finnish", "festvox-suopuhe-lj", FINNISH),
    "czech_dita": AccentVoice("Czech", "festvox-czech-dita", CZECH),
}
ACCENT_VOICE_NAMES = tuple(ACCENT_VOICES)  # the order data synth draws them in


def base_phone(name: str) -> str:
    """A phone name without its stress digit (Italian ``E1``) or Finnish length mark (``a:``, ``p:``)."""
    return name.rstrip("0123456789").removesuffix(":") or name


def accent_phonemes(voice: str, segments: tp.Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Phones ``(voice's name, end seconds)`` in order -> ``(espeak-ng name, start seconds)``; ValueError on a
    phone the voice's table does not know (the caller skips that sentence)."""
    table = ACCENT_VOICES[voice].phones
    names = [base_phone(phone) for phone, _ in segments]
    unknown = sorted(set(names) - table.keys())
    if unknown:
        raise ValueError(f"{voice} phones with no espeak-ng equivalent: {unknown}")
    starts = [0.0] + [end for _, end in segments[:-1]]
    return [(table[name], start) for name, start in zip(names, starts, strict=True)]
