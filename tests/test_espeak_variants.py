"""Random espeak-ng voice variants: drawn from a seed, spoken from a private data directory, planned into
training corpora only, and leaving every named voice sounding exactly as before."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from delaykit.data import espeak_variants, synth
from delaykit.data.manifest import read_corpus

needs_espeak = pytest.mark.skipif(not synth.espeak_available(),
                                  reason="the espeak-ng C library is not installed (apt-get install espeak-ng)")


def settings(text: str) -> dict[str, list[float]]:
    """A variant file's settings: keyword -> numbers (formants keyed ``formant N``)."""
    out = {}
    for line in text.splitlines():
        key, *values = line.split()
        if key == "formant":
            key, values = f"formant {values[0]}", values[1:]
        if key not in ("language", "name"):
            out[key] = [float(v) for v in values]
    return out


def test_a_variant_follows_from_its_name_and_stays_in_the_named_variants_span():
    assert espeak_variants.random_variant_text(1234) == espeak_variants.random_variant_text(1234)
    drawn = [settings(espeak_variants.random_variant_text(seed)) for seed in range(200)]
    assert len({json.dumps(d, sort_keys=True) for d in drawn}) == 200
    f1 = np.array([d["formant 1"][0] for d in drawn])
    assert 75 <= f1.min() and f1.max() <= 130 and f1.std() > 5  # vocal tracts shorter and longer than espeak's
    low = np.array([d["pitch"][0] for d in drawn])
    assert 60 <= low.min() and low.max() <= 190
    assert all(d["pitch"][1] > d["pitch"][0] for d in drawn)
    assert {int(d["klatt"][0]) for d in drawn if "klatt" in d} == {1, 2, 3}  # never klatt4, a held-out variant
    assert 0.1 < np.mean(["breath" in d for d in drawn]) < 0.5
    assert espeak_variants.is_random_variant("dkrand17") and not espeak_variants.is_random_variant("m3")
    with pytest.raises(ValueError):
        espeak_variants.ensure_variant(espeak_variants.Path("."), "m3")


def test_corpora_draw_random_variants_only_when_asked_and_only_for_training():
    plain = synth.plan(synth.SynthConfig(seed=5), 200)
    mixed = synth.plan(synth.SynthConfig(seed=5, random_variant_prob=0.7), 200)
    assert [u.text for u in mixed] == [u.text for u in plain]  # the same sentences
    assert not any("dkrand" in u.voice for u in plain)
    share = np.mean([espeak_variants.is_random_variant(u.voice.partition("+")[2]) for u in mixed])
    assert 0.6 < share < 0.8
    heldout = synth.plan(synth.SynthConfig(seed=5, split="heldout", random_variant_prob=0.7), 50)
    assert [u.voice for u in heldout] == [u.voice for u in synth.plan(synth.SynthConfig(seed=5, split="heldout"), 50)]


@needs_espeak
def test_a_random_variant_is_a_reproducible_new_speaker():
    text = "Remember to pack the blue suitcase."
    base = synth.speak_clean(text, "en-us", 160, 50)
    first = synth.speak_clean(text, "en-us+dkrand4242", 160, 50)
    again = synth.speak_clean(text, "en-us+dkrand4242", 160, 50)
    other = synth.speak_clean(text, "en-us+dkrand77", 160, 50)
    assert np.array_equal(first.samples, again.samples) and first.words == again.words
    assert [w.text for w in first.words] == text.split()
    for different in (base, other):
        n = min(first.samples.shape[0], different.samples.shape[0])
        assert different.samples.shape != first.samples.shape or not np.allclose(first.samples[:n],
                                                                               different.samples[:n])
    assert first.phonemes and [p for p, _ in first.phonemes] == [p for p, _ in base.phonemes]  # same words said


NAMED_VOICE_SCRIPT = """
import hashlib, sys
from delaykit.data import synth
def digest():
    speech = synth.speak_clean("The flight to Lisbon leaves at six thirty.", "en-gb-scotland+klatt2", 170, 40)
    return hashlib.sha1(speech.samples.tobytes()).hexdigest()
before = digest()
synth.engine().use_random_variants()
assert "delaykit-espeak" in str(synth.engine().data_dir())
print(before == digest())
"""


@needs_espeak
def test_named_voices_sound_the_same_on_the_private_data_directory():
    result = subprocess.run([sys.executable, "-c", NAMED_VOICE_SCRIPT], check=False, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@needs_espeak
def test_cli_corpus_with_random_variants(tmp_path):
    from click.testing import CliRunner

    from delaykit.cli import main

    out = tmp_path / "corpus"
    args = ["data", "synth", "--out", str(out), "--hours", "0.004", "--seed", "9", "--workers", "1"]
    result = CliRunner().invoke(main, [*args, "--random-variants", "1.0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_corpus(out)
    assert rows and all("+dkrand" in row["voice"] for row in rows)
    assert all([w for w, _, _ in row["alignments"]] == row["text"].split() for row in rows)
    assert json.loads((out / "synth_config.json").read_text())["random_variant_prob"] == 1.0
    again = tmp_path / "again"
    synth.synthesize(again, synth.SynthConfig(hours=0.004, seed=9, workers=1, random_variant_prob=1.0),
                     log=io.StringIO())
    first_wav = min(out.glob("wavs/*/*.wav"))
    assert first_wav.read_bytes() == (again / first_wav.relative_to(out)).read_bytes()
