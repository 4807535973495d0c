"""Random espeak-ng voice variants: drawn from a seed, spoken from a private data directory, planned into
training corpora only, and leaving every named voice sounding exactly as before."""

from __future__ import annotations

import hashlib
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
    assert espeak_variants.variant_text("dkrand1234") == espeak_variants.variant_text("dkrand1234")
    drawn = [settings(espeak_variants.variant_text(f"dkrand{seed}")) for seed in range(200)]
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


@pytest.mark.parametrize("family, digest", [("dkrand", "2780a184bf1c3042"), ("dkwide", "166c8f95e2ab60f3")])
def test_a_seed_gives_the_variant_it_gave_when_the_corpora_were_made(family, digest):
    texts = "".join(espeak_variants.variant_text(f"{family}{seed}") for seed in range(200))
    assert hashlib.sha1(texts.encode()).hexdigest()[:16] == digest  # stage 6 and 7 training speech rebuilds


def test_wide_variants_reach_the_named_training_variants_whole_span():
    assert espeak_variants.variant_text("dkwide1234") == espeak_variants.span_variant_text(espeak_variants.WIDE, 1234)
    assert espeak_variants.is_random_variant("dkwide17") and not espeak_variants.is_random_variant("dkwide")
    wide = [settings(espeak_variants.variant_text(f"dkwide{seed}")) for seed in range(300)]
    named = [settings(espeak_variants.variant_text(f"dkrand{seed}")) for seed in range(300)]
    low = np.array([d["pitch"][0] for d in wide])
    assert low.min() < 60 and low.max() > 200  # beyond the named family's 60-190 Hz on both sides
    for formant in (1, 2):  # single formants moved further than a vocal-tract scale moves them
        assert np.std([d[f"formant {formant}"][0] for d in wide]) > 1.3 * np.std(
            [d[f"formant {formant}"][0] for d in named])
    voicing = [d["voicing"][0] for d in wide if "voicing" in d]
    assert min(voicing) < 40 and max(voicing) > 150
    tones = [d["tone"] for d in wide if "tone" in d]
    assert 0.2 < len(tones) / len(wide) < 0.5
    assert all(len(t) % 2 == 0 and list(t[::2]) == sorted(t[::2]) for t in tones)  # (Hz, amplitude) pairs, rising
    assert max(d["echo"][1] for d in wide if "echo" in d) > 50  # echoes as strong as Marco's ...
    assert {int(d["klatt"][0]) for d in wide if "klatt" in d} == {1, 2, 3, 5, 6}  # ... but never klatt4's synthesizer


def test_corpora_draw_random_variants_only_when_asked_and_only_for_training():
    plain = synth.plan(synth.SynthConfig(seed=5), 200)
    mixed = synth.plan(synth.SynthConfig(seed=5, random_variant_prob=0.7), 200)
    assert [u.text for u in mixed] == [u.text for u in plain]  # the same sentences
    assert not any("dkrand" in u.voice for u in plain)
    share = np.mean([espeak_variants.is_random_variant(u.voice.partition("+")[2]) for u in mixed])
    assert 0.6 < share < 0.8
    wide = synth.plan(synth.SynthConfig(seed=5, random_variant_prob=0.7, random_variant_span="wide"), 200)
    assert [u.voice.replace("+dkwide", "+dkrand") for u in wide] == [u.voice for u in mixed]  # only the family
    heldout = synth.plan(synth.SynthConfig(seed=5, split="heldout", random_variant_prob=0.7), 50)
    assert [u.voice for u in heldout] == [u.voice for u in synth.plan(synth.SynthConfig(seed=5, split="heldout"), 50)]


@needs_espeak
def test_a_random_variant_is_a_reproducible_new_speaker():
    text = "Remember to pack the blue suitcase."
    base = synth.speak_clean(text, "en-us", 160, 50)
    first = synth.speak_clean(text, "en-us+dkrand4242", 160, 50)
    again = synth.speak_clean(text, "en-us+dkrand4242", 160, 50)
    other = synth.speak_clean(text, "en-us+dkrand77", 160, 50)
    wide = synth.speak_clean(text, "en-us+dkwide4242", 160, 50)
    assert np.array_equal(first.samples, again.samples) and first.words == again.words
    assert [w.text for w in first.words] == text.split() == [w.text for w in wide.words]
    assert np.abs(wide.samples).max() > 0.05  # a wide variant (weak voicing, tone curves) still speaks out loud
    for different in (base, other, wide):
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
    result = CliRunner().invoke(main, [*args, "--random-variants", "1.0", "--variant-span", "wide"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_corpus(out)
    assert rows and all("+dkwide" in row["voice"] for row in rows)
    assert all([w for w, _, _ in row["alignments"]] == row["text"].split() for row in rows)
    recorded = json.loads((out / "synth_config.json").read_text())
    assert recorded["random_variant_prob"] == 1.0 and recorded["random_variant_span"] == "wide"
    again = tmp_path / "again"
    synth.synthesize(again, synth.SynthConfig(hours=0.004, seed=9, workers=1, random_variant_prob=1.0,
                                              random_variant_span="wide"), log=io.StringIO())
    first_wav = min(out.glob("wavs/*/*.wav"))
    assert first_wav.read_bytes() == (again / first_wav.relative_to(out)).read_bytes()
