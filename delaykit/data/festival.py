"""Training speech from Festival's English diphone voices (``kal_diphone``, ``ked_diphone``), with word times.

Festival keeps its own timeline: after synthesis every word of the utterance's Word relation hangs over its
syllables and segments (phones), each with an end time, and under the whitespace token it came from ("1985"
-> nineteen eighty five; "forty-five," -> forty five). One batch script per utterance sets the voice, its rate
(``Duration_Stretch``) and mean pitch, synthesises, saves the wave and prints each word's token, first segment
start and last segment end, then every segment (phone) with its end; a token's words then give that token's
start and end. Words Festival merges into their neighbour (the ``'s`` of "Smith's") have no segments and are
skipped. The phones, renamed as espeak-ng's (``delaykit.data.cmu_phones``), are the phoneme targets of the
codec's semantic encoder.

Debian packages: ``festival`` with ``festvox-kallpc16k`` (kal) and ``festvox-kdlpc16k`` (ked). Festival's
``us-slt-hts`` voice is CMU's slt speaker, which flite's evaluation voices include: it is never used. Voices of
other languages reading English (``delaykit.data.festival_accents``) go through the same script, keeping their
own pitch, and give phones only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..audio import read_audio
from .cmu_phones import espeak_phonemes
from .festival_accents import ACCENT_VOICE_NAMES, ACCENT_VOICES, accent_phonemes

FESTIVAL_TRAIN_VOICES = ("kal_diphone", "ked_diphone")
# The Debian package that installs each voice: what to tell a user whose Festival lacks one.
VOICE_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                  **{voice: accent.package for voice, accent in ACCENT_VOICES.items()}}
# The diphone voices' own pitch model (festival's voice definitions): targets are moved, the model kept.
_MODEL_F0_MEAN, _MODEL_F0_STD = 170, 34


def festival_available(voice: str | None = None) -> bool:
    """Festival is installed, and so is ``voice`` when given."""
    if shutil.which("festival") is None:
        return False
    return voice is None or any(Path("/usr/share/festival/voices").glob(f"*/{voice}"))


def require_voices(voices: tuple[str, ...] | list[str]) -> None:
    """Raise a clear error, naming the packages to install, unless Festival and every one of ``voices`` are.

    Without it a missing voice shows up minutes into a corpus as festival exiting with status 255."""
    if not festival_available():
        raise RuntimeError("festival is not installed (Debian: apt-get install festival)")
    missing = [voice for voice in voices if not festival_available(voice)]
    if missing:
        packages = " ".join(VOICE_PACKAGES.get(voice, voice) for voice in missing)
        raise RuntimeError(f"Festival voices {', '.join(missing)} are not installed (Debian: apt-get install {packages})")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _script(text: str, voice: str, wav: Path, stretch: float, f0_mean: float | None) -> str:
    segment_start = "R:SylStructure.daughter1.daughter1.R:Segment.p.end"
    segment_end = "R:SylStructure.daughtern.daughtern.R:Segment.end"
    pitch = "" if f0_mean is None else f"""
(set! int_lr_params '((target_f0_mean {f0_mean:.1f}) (target_f0_std {f0_mean * 0.13:.1f})
                      (model_f0_mean {_MODEL_F0_MEAN}) (model_f0_std {_MODEL_F0_STD})))"""
    return f"""
(voice_{voice})
(Parameter.set 'Duration_Stretch {stretch:.4f}){pitch}
(set! utt (utt.synth (eval (list 'Utterance 'Text {_scheme_string(text)}))))
(utt.save.wave utt {_scheme_string(str(wav))} 'riff)
(mapcar (lambda (w)
          (format t "W\\t%s\\t%f\\t%f\\n" (item.feat w "R:Token.parent.id")
                  (item.feat w "{segment_start}") (item.feat w "{segment_end}")))
        (utt.relation.items utt 'Word))
(mapcar (lambda (s) (format t "S\\t%s\\t%f\\n" (item.name s) (item.feat s "end")))
        (utt.relation.items utt 'Segment))
"""


def festival_speech(text: str, voice: str, stretch: float = 1.0, f0_mean: float = 105.0
                    ) -> tuple[np.ndarray, int, list[tuple[str, float, float]], list[tuple[str, float]]]:
    """``text`` spoken by Festival's ``voice``: mono float32 samples, their rate, each whitespace-separated
    word's (word, start, end) in seconds, and every phone as the espeak-ng phoneme of that sound with its start
    (``delaykit.data.cmu_phones``). ``stretch`` > 1 speaks slower; ``f0_mean`` is the mean pitch in Hz. Raises
    ValueError when Festival's tokens do not line up with the words (the caller skips the sentence).

    A voice of another language (:data:`ACCENT_VOICES`) keeps its own pitch model (``f0_mean`` is not used) and
    its phones are renamed by :func:`accent_phonemes`; its words are the English ones it read, not what it said."""
    accent = voice in ACCENT_VOICES
    if voice not in FESTIVAL_TRAIN_VOICES and not accent:
        raise ValueError(f"{voice!r} is not a Festival training voice {FESTIVAL_TRAIN_VOICES} "
                         f"or a voice of another language {ACCENT_VOICE_NAMES}")
    words = text.split()
    with tempfile.TemporaryDirectory(prefix="delaykit-festival-") as tmp:
        wav, script = Path(tmp) / "out.wav", Path(tmp) / "say.scm"
        script.write_text(_script(text, voice, wav, stretch, None if accent else f0_mean), encoding="utf-8")
        try:
            out = subprocess.run(["festival", "--batch", str(script)], check=True, capture_output=True,
                                 text=True).stdout
        except subprocess.CalledProcessError as error:
            if not accent:  # require_voices vouched for the voice: a failure is not the sentence's
                raise
            # The Italian voices' intonation fails on some questions (SIOD "wrong type of argument"): skip it.
            raise ValueError(f"festival's {voice} could not speak {text!r}") from error
        audio, rate = read_audio(wav)
    spans: dict[str, list[float]] = {}  # token id -> [start, end], in the order tokens are first seen
    segments: list[tuple[str, float]] = []  # (phone, end seconds)
    for line in out.splitlines():
        tag, token, start, end = (line.split("\t") + ["", "", "", ""])[:4]
        if tag == "S":
            segments.append((token, float(start)))  # a phone line: name and end time
            continue
        if tag != "W" or float(end) <= 0.0:
            continue  # not a word line, or a word merged into its neighbour
        span = spans.setdefault(token, [float(start), float(end)])
        span[1] = max(span[1], float(end))
    if len(spans) != len(words):
        raise ValueError(f"festival spoke {len(spans)} tokens for the {len(words)} words of {text!r}")
    timed = [(word, start, end) for word, (start, end) in zip(words, spans.values(), strict=True)]
    phonemes = accent_phonemes(voice, segments) if accent else espeak_phonemes(segments)
    return audio[0], rate, timed, phonemes
