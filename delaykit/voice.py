"""Named voices of delaykit's own TTS models: a voice as conditions (accent, timbre, pitch, speaking rate).

The training corpora are spoken by espeak-ng voices (an accent such as ``en-gb-scotland``) with a variant (a
timbre such as ``f3`` or ``Alicia``) at a pitch setting, and by flite and Festival voices; each utterance is
also spoken at its own rate. A voice-conditioned model is told these four attributes of what it is to say, as
lookup conditions summed into every step's input (Kyutai's ``lut`` conditioners), so a user picks a voice by
name (``en-us+f3``, ``flite:kal``) and a pitch and rate, and the model does not have to guess them.

In training the attributes change at each utterance of a packed sequence (the condition is given per frame)
and each is sometimes left out, so any of them may be absent at synthesis time (the model then picks).
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

VOICE_ATTRIBUTES = ("accent", "timbre", "pitch", "rate")
# Speaking rate as letters per second of speech relative to this (the median of the espeak-ng training
# corpora, measured on runs/data/train-e: 16.5; espeak's own rates of 120-260 words a minute give 11-23).
REFERENCE_LETTERS_PER_SECOND = 16.5
RATE_VALUES = tuple(f"{tenths / 10:.1f}" for tenths in range(6, 16))  # "0.6" .. "1.5"
PITCH_VALUES = ("-2", "-1", "0", "1", "2")  # espeak-ng pitch 20-32, 33-44, 45-56, 57-68, 69-80
ESPEAK_PITCH_RANGE = (20, 80)
CONDITION_DIM = 64  # width of each attribute's lookup table (projected to the model width)


def split_voice(name: str) -> tuple[str, str | None]:
    """``"en-us+f3"`` -> ("en-us", "f3"); ``"flite:kal"`` -> ("flite:kal", None)."""
    accent, _, timbre = name.partition("+")
    return accent, timbre or None


def rate_value(relative_rate: float) -> str:
    """The nearest rate step of a speaking rate relative to the reference (clipped to 0.6-1.5)."""
    tenths = min(max(round(relative_rate * 10), 6), 15)
    return f"{tenths / 10:.1f}"


def pitch_value(espeak_pitch: float) -> str:
    """The pitch step (-2..2) of an espeak-ng pitch setting (20-80)."""
    low, high = ESPEAK_PITCH_RANGE
    step = (high - low + 1) / len(PITCH_VALUES)
    index = min(max(int((espeak_pitch - low) // step), 0), len(PITCH_VALUES) - 1)
    return PITCH_VALUES[index]


def letters_per_second(words: tp.Sequence[tp.Any]) -> float:
    """Speaking rate of timed words (``.text``, ``.start``, ``.end``): letters and digits per second from the
    first word's start to the last word's end."""
    if not words:
        return 0.0
    letters = sum(sum(char.isalnum() for char in word.text) for word in words)
    return letters / max(words[-1].end - words[0].start, 0.1)


@dataclass(frozen=True)
class VoiceChoice:
    """What a user asks of a voice-conditioned model; None leaves an attribute to the model."""

    voice: str | None = None  # "en-us+f3", "en-gb-scotland", "flite:kal"
    pitch: int | None = None  # -2 .. 2 (espeak voices)
    rate: float | None = None  # speaking rate relative to the usual, 0.6 .. 1.5

    def values(self) -> dict[str, str | None]:
        """The condition value of each attribute (None: absent)."""
        accent, timbre = split_voice(self.voice) if self.voice else (None, None)
        pitch = None
        if self.pitch is not None:
            if str(self.pitch) not in PITCH_VALUES:
                raise ValueError(f"pitch {self.pitch} is not one of {', '.join(PITCH_VALUES)}")
            pitch = str(self.pitch)
        rate = None
        if self.rate is not None:
            if not 0.55 <= self.rate <= 1.55:
                raise ValueError(f"rate {self.rate} is outside 0.6-1.5 (relative to the usual speaking rate)")
            rate = rate_value(self.rate)
        return {"accent": accent, "timbre": timbre, "pitch": pitch, "rate": rate}


def utterance_values(info: dict) -> dict[str, str | None]:
    """Condition values of a corpus utterance (``CodeCorpus.utterances`` entry: voice, pitch, letters per
    second); pitch only for espeak-ng voices, whose pitch setting it is."""
    accent, timbre = split_voice(str(info["voice"]))
    espeak = ":" not in accent
    pitch = pitch_value(float(info["pitch"])) if espeak and info.get("pitch") is not None else None
    rate = rate_value(float(info["letters_per_second"]) / REFERENCE_LETTERS_PER_SECOND)
    return {"accent": accent, "timbre": timbre, "pitch": pitch, "rate": rate}


def voice_conditioners(accents: tp.Iterable[str], timbres: tp.Iterable[str], dim: int = CONDITION_DIM) -> dict:
    """LM config entries (``conditioners`` and ``fuser``) for the four voice attributes, Kyutai's format."""
    choices = {"accent": sorted(set(accents)), "timbre": sorted(set(timbres)), "pitch": list(PITCH_VALUES),
               "rate": list(RATE_VALUES)}
    conditioners = {name: {"type": "lut", "lut": {"n_bins": len(values), "dim": dim, "possible_values": values}}
                    for name, values in choices.items()}
    return {"conditioners": conditioners, "fuser": {"sum": list(VOICE_ATTRIBUTES)}}


def model_voices(conditioners: tp.Mapping[str, tp.Any]) -> list[str]:
    """The voice names a model's ``accent`` and ``timbre`` lookup conditioners know (every accent, and every
    espeak accent with every timbre)."""
    accents = sorted(conditioners["accent"].possible_values)
    timbres = sorted(conditioners["timbre"].possible_values)
    names = list(accents)
    names += [f"{accent}+{timbre}" for accent in accents if ":" not in accent for timbre in timbres]
    return names
