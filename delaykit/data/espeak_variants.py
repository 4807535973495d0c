"""Random espeak-ng voice variants: a new speaker for every seed, beside espeak's few dozen named ones.

espeak-ng's voice variants (files in ``espeak-ng-data/voices/!v``) set a speaker's pitch range, the
frequency, strength and width of each formant, breathiness, roughness, flutter, echo and the synthesizer
(classic or Klatt). A recognizer trained on the ~50 named variants still misses many words of variants it
has never heard (the held-out split's), so :func:`span_variant_text` draws a whole variant from a seed,
with each setting in the span the named training variants use, and formant frequencies scaled together (a
longer or shorter vocal tract) and then one by one. The held-out split's variants are never read.

espeak-ng only loads variants from its data directory, so :func:`private_data_dir` builds a private copy of
that directory (links to the system's files, nothing copied) whose ``voices/!v`` also holds random variants,
written on demand by :func:`ensure_variant`. A random variant is named ``dkrand<seed>`` (``en-gb+dkrand1234``);
its file follows from the name alone, so any process can rebuild it and every corpus stays reproducible.

Two families of random variants exist (:class:`VariantSpan`). ``dkrand<seed>`` (``NAMED``) keeps every
setting near the middle of the named variants' span. ``dkwide<seed>`` (``WIDE``) reaches the whole
span the named *training* variants use: higher and lower pitch, formants moved one by one as far as the
named variants move them, weak voicing, soft consonants, tone (spectral tilt) curves, strong echoes and
the Klatt synthesizers 5 and 6: the ASR model of stage 6, trained on the first family, still missed 46 % and
68 % of the words of the held-out variants with such settings (anika, Marco).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Range = tuple[float, float]  # uniform draws in [low, high)
IntRange = tuple[int, int]  # integer draws in [low, high)


@dataclass(frozen=True)
class VariantSpan:
    """Where one family of random variants draws each setting of a variant file.

    Optional settings are ``(share, ...)``: the share of variants that set them (0: never, and nothing is
    drawn for them, so adding one to a family leaves the others' variants as they were)."""

    prefix: str  # the family's variants are named <prefix><seed>
    stream: int  # mixed into the seed: families draw independently
    pitch_base: Range  # Hz
    pitch_width: Range  # Hz from the base to the top of the pitch range
    tract: Range  # all formant frequencies scaled together: vocal tract length
    formant_jitter: float  # then each formant on its own by up to +- this share ...
    far_formant: tuple[float, float] = (0.0, 0.0)  # ... or, for this share of formants, by up to +- this one
    strength: Range = (60, 140)  # formants 0-5
    upper_strength: Range = (40, 120)  # formants 6-8
    width: Range = (80, 160)
    roughness: tuple[float, IntRange] = (0.4, (0, 5))
    breath: tuple[float, IntRange] = (0.3, (0, 5))  # eight values
    flutter: tuple[float, IntRange] = (0.3, (0, 25))
    echo: tuple[float, IntRange, IntRange] = (0.3, (20, 150), (5, 25))  # delay ms, strength %
    voicing: tuple[float, IntRange] = (0.3, (60, 160))
    consonants: tuple[float, IntRange, int] = (0.3, (80, 130), 1)  # values drawn
    tone: tuple[float, IntRange] = (0.0, (3, 6))  # (Hz, amplitude) points of a spectral tilt curve
    klatt: tuple[float, tuple[int, ...]] = (0.25, (1, 2, 3))  # the synthesizers of klatt, klatt2, klatt3


# espeak's named training variants span pitch 37-390 Hz, formants 0-2 at 40-150 % of their nominal frequency
# (3 and 4 at 0-290 %), voicing 35-165 and consonants 40-120 (the keywords of `espeak-ng-data/voices/!v/*`).
NAMED = VariantSpan("dkrand", 0x5EED, pitch_base=(60, 190), pitch_width=(30, 110), tract=(0.88, 1.18),
                    formant_jitter=0.07)  # near the middle of that span (m3 80 Hz, f2 142, Alicia 180)
WIDE = VariantSpan("dkwide", 0x771DE, pitch_base=(55, 230), pitch_width=(20, 150), tract=(0.85, 1.2),
                   formant_jitter=0.07, far_formant=(0.3, 0.22), strength=(40, 160), upper_strength=(0, 120),
                   width=(60, 180), roughness=(0.4, (0, 6)), breath=(0.3, (0, 6)), flutter=(0.4, (0, 25)),
                   echo=(0.35, (10, 160), (5, 80)), voicing=(0.5, (30, 166)), consonants=(0.5, (40, 121), 2),
                   tone=(0.35, (3, 6)), klatt=(0.3, (1, 2, 3, 5, 6)))  # never klatt4's synthesizer 4 (held out)
SPANS = {"named": NAMED, "wide": WIDE}  # a corpus's choice of family (SynthConfig.random_variant_span)
# Bumped whenever what a seed gives changes: private directories are per version, so a file written by
# older code is never reused.
VARIANT_VERSION = 1
_RANDOM_NAME = re.compile(rf"^({'|'.join(span.prefix for span in SPANS.values())})(\d+)$")


def is_random_variant(variant: str) -> bool:
    """Whether ``variant`` (the part of a voice name after ``+``) names a random variant."""
    return _RANDOM_NAME.match(variant) is not None


def random_variant_name(rng: np.random.Generator, span: str = "named") -> str:
    """A fresh random variant's name, drawn from ``rng``, of the family ``SPANS[span]``."""
    return f"{SPANS[span].prefix}{int(rng.integers(2**31))}"


def span_variant_text(span: VariantSpan, seed: int) -> str:
    """The variant file ``<span.prefix><seed>``: a speaker drawn from ``span``."""
    rng = np.random.default_rng([seed, span.stream])

    def sometimes(share: float) -> bool:
        return share > 0 and rng.random() < share

    def ints(bounds: IntRange, count: int = 1) -> str:
        return " ".join(str(int(rng.integers(*bounds))) for _ in range(count))

    low = float(rng.uniform(*span.pitch_base))
    lines = ["language variant", f"name {span.prefix}{seed}", f"pitch {low:.0f} {low + rng.uniform(*span.pitch_width):.0f}"]
    tract = rng.uniform(*span.tract)
    for formant in range(9):
        jitter = span.far_formant[1] if sometimes(span.far_formant[0]) else span.formant_jitter
        frequency = 100 * tract * rng.uniform(1 - jitter, 1 + jitter)
        strength = rng.uniform(*(span.strength if formant < 6 else span.upper_strength))
        width = rng.uniform(*span.width)
        lines.append(f"formant {formant} {frequency:.0f} {strength:.0f} {width:.0f}")
    if sometimes(span.roughness[0]):
        lines.append(f"roughness {ints(span.roughness[1])}")
    if sometimes(span.breath[0]):
        lines.append("breath " + " ".join(str(int(b)) for b in rng.integers(*span.breath[1], size=8)))
    if sometimes(span.flutter[0]):
        lines.append(f"flutter {ints(span.flutter[1])}")
    if sometimes(span.echo[0]):
        lines.append(f"echo {ints(span.echo[1])} {ints(span.echo[2])}")
    if sometimes(span.voicing[0]):
        lines.append(f"voicing {ints(span.voicing[1])}")
    if sometimes(span.consonants[0]):
        lines.append(f"consonants {ints(span.consonants[1], span.consonants[2])}")
    if sometimes(span.tone[0]):
        points = np.sort(rng.uniform(80, 5000, size=int(rng.integers(*span.tone[1]))))  # Hz, rising
        amplitudes = rng.integers(10, 256, size=len(points))
        lines.append("tone " + " ".join(f"{f:.0f} {a}" for f, a in zip(points, amplitudes)))
    if sometimes(span.klatt[0]):
        lines.append(f"klatt {span.klatt[1][int(rng.integers(len(span.klatt[1])))]}")
    return "\n".join(lines) + "\n"


def variant_text(variant: str) -> str:
    """The file of random variant ``variant`` (``dkrand<seed>``, ``dkwide<seed>``)."""
    match = _RANDOM_NAME.match(variant)
    if match is None:
        raise ValueError(f"{variant!r} is not a random variant name")
    span = next(span for span in SPANS.values() if span.prefix == match.group(1))
    return span_variant_text(span, int(match.group(2)))


def private_data_dir(system: Path, root: Path | None = None) -> Path:
    """A directory that espeak-ng can use as its data: links to every file of ``system``, and a
    ``voices/!v`` of its own (links to the named variants) that random variants are written into."""
    if root is None:
        user = os.getuid() if hasattr(os, "getuid") else 0
        key = hashlib.sha1(f"{system.resolve()}|{VARIANT_VERSION}".encode()).hexdigest()[:10]
        root = Path(tempfile.gettempdir()) / f"delaykit-espeak-{user}-{key}"
    data = root / "espeak-ng-data"
    variants = data / "voices" / "!v"
    variants.mkdir(parents=True, exist_ok=True)
    for source, target_dir in [(system, data), (system / "voices", data / "voices"),
                               (system / "voices" / "!v", variants)]:
        for entry in source.iterdir():
            target = target_dir / entry.name
            if target == data / "voices" or target == variants or target.exists() or target.is_symlink():
                continue
            try:
                target.symlink_to(entry)
            except FileExistsError:  # another process linked it first
                pass
    return data


def ensure_variant(data: Path, variant: str) -> None:
    """Write random variant ``variant``'s file into private data directory ``data`` unless it is there."""
    text = variant_text(variant)
    path = data / "voices" / "!v" / variant
    if path.exists():
        return
    partial = path.with_name(f".{variant}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)  # atomic: a concurrent reader sees no file or the whole file
