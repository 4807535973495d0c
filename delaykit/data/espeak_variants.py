"""Random espeak-ng voice variants: a new speaker for every seed, beside espeak's few dozen named ones.

espeak-ng's voice variants (files in ``espeak-ng-data/voices/!v``) set a speaker's pitch range, the
frequency, strength and width of each formant, breathiness, roughness, flutter, echo and the synthesizer
(classic or Klatt). A recognizer trained on the ~50 named variants still misses many words of variants it
has never heard (the held-out split's), so :func:`random_variant_text` draws a whole variant from a seed,
with each setting in the span the named training variants use, and formant frequencies scaled together (a
longer or shorter vocal tract) and then one by one. The held-out split's variants are never read.

espeak-ng only loads variants from its data directory, so :func:`private_data_dir` builds a private copy of
that directory (links to the system's files, nothing copied) whose ``voices/!v`` also holds random variants,
written on demand by :func:`ensure_variant`. A random variant is named ``dkrand<seed>`` (``en-gb+dkrand1234``);
its file follows from the name alone, so any process can rebuild it and every corpus stays reproducible.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np

RANDOM_PREFIX = "dkrand"
# Bumped whenever random_variant_text changes what a seed gives: private directories are per version, so a
# file written by older code is never reused.
VARIANT_VERSION = 1
_RANDOM_NAME = re.compile(rf"^{RANDOM_PREFIX}(\d+)$")


def is_random_variant(variant: str) -> bool:
    """Whether ``variant`` (the part of a voice name after ``+``) names a random variant."""
    return _RANDOM_NAME.match(variant) is not None


def random_variant_name(rng: np.random.Generator) -> str:
    """A fresh random variant's name, drawn from ``rng``."""
    return f"{RANDOM_PREFIX}{int(rng.integers(2**31))}"


def random_variant_text(seed: int) -> str:
    """The variant file of seed ``seed``: a speaker drawn from the span of espeak's named training variants."""
    rng = np.random.default_rng([seed, 0x5EED])
    low = float(rng.uniform(60, 190))  # base pitch, Hz (m3 80, f2 142, Alicia 180)
    lines = ["language variant", f"name {RANDOM_PREFIX}{seed}", f"pitch {low:.0f} {low + rng.uniform(30, 110):.0f}"]
    tract = rng.uniform(0.88, 1.18)  # all formants together: vocal tract length
    for formant in range(9):
        frequency = 100 * tract * rng.uniform(0.93, 1.07)
        strength = rng.uniform(60, 140) if formant < 6 else rng.uniform(40, 120)
        width = rng.uniform(80, 160)
        lines.append(f"formant {formant} {frequency:.0f} {strength:.0f} {width:.0f}")
    if rng.random() < 0.4:
        lines.append(f"roughness {int(rng.integers(0, 5))}")
    if rng.random() < 0.3:
        lines.append("breath " + " ".join(str(int(b)) for b in rng.integers(0, 5, size=8)))
    if rng.random() < 0.3:
        lines.append(f"flutter {int(rng.integers(0, 25))}")
    if rng.random() < 0.3:
        lines.append(f"echo {int(rng.integers(20, 150))} {int(rng.integers(5, 25))}")
    if rng.random() < 0.3:
        lines.append(f"voicing {int(rng.integers(60, 160))}")
    if rng.random() < 0.3:
        lines.append(f"consonants {int(rng.integers(80, 130))}")
    if rng.random() < 0.25:
        lines.append(f"klatt {int(rng.integers(1, 4))}")  # the synthesizers of klatt, klatt2, klatt3
    return "\n".join(lines) + "\n"


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
    match = _RANDOM_NAME.match(variant)
    if match is None:
        raise ValueError(f"{variant!r} is not a random variant name")
    path = data / "voices" / "!v" / variant
    if path.exists():
        return
    partial = path.with_name(f".{variant}.{os.getpid()}")
    partial.write_text(random_variant_text(int(match.group(1))), encoding="utf-8")
    os.replace(partial, path)  # atomic: a concurrent reader sees no file or the whole file
