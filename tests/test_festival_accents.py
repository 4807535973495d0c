"""Festival's voices of other languages as phonemes-only training speech for the codec's semantic encoder."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from delaykit.data.festival import festival_available
from delaykit.data.festival_accents import ACCENT_VOICES, accent_phonemes, base_phone
from delaykit.train.phonemes import PhonemeInventory, normalize_phoneme


def test_stress_digits_and_length_marks_are_dropped_and_starts_follow_the_ends():
    assert [base_phone(p) for p in ("E1", "a:", "p:", "r~*", "##", "ax")] == ["E", "a", "p", "r~*", "##", "ax"]
    spoken = accent_phonemes("lp_diphone", [("#", 0.1), ("dz", 0.2), ("E1", 0.35), ("ng", 0.4), ("#", 0.6)])
    assert spoken == [("_", 0.0), ("z", 0.1), ("E", 0.2), ("N", 0.35), ("_", 0.4)]
    with pytest.raises(ValueError, match="no espeak-ng equivalent"):
        accent_phonemes("czech_dita", [("qq", 0.1)])


def test_every_name_is_an_english_phoneme_of_the_training_inventory():
    # The targets must be classes English speech already has: a renamed phone outside them would be a class
    # no English utterance ever trains (espeak-ng's names, as delaykit.train.phonemes folds them).
    names = ("_", "A:", "E", "eI", "i:", "oU", "O:", "u:", "@", "a", "3:", "p", "t", "k", "b", "d", "g", "f", "v", "s",
             "z", "S", "Z", "h", "m", "n", "N", "l", "r", "j", "w", "tS", "dZ", "T", "D")
    english = {normalize_phoneme(name) for name in names}
    for voice in ACCENT_VOICES.values():
        assert {normalize_phoneme(name) for name in voice.phones.values()} <= english
    assert len(PhonemeInventory(english)) == len(english)


@pytest.mark.parametrize("voice", sorted(ACCENT_VOICES))
def test_each_voice_phone_set_is_covered(voice, tmp_path):
    if not festival_available(voice):
        pytest.skip(f"festival voice {voice} ({ACCENT_VOICES[voice].package}) is not installed")
    script = f"(voice_{voice})\n(mapcar (lambda (p) (format t \"%s\\n\" (car p))) " \
             "(cadr (assoc 'phones (PhoneSet.description))))\n"
    (tmp_path / "phones.scm").write_text(script, encoding="utf-8")
    out = subprocess.run(["festival", "--batch", str(tmp_path / "phones.scm")], capture_output=True, text=True,
                         check=True)
    phones = {base_phone(name) for name in out.stdout.split()}
    assert phones and phones <= ACCENT_VOICES[voice].phones.keys()


def test_accent_rows_carry_phonemes_and_are_refused_as_lm_corpora(tmp_path):
    from delaykit.data.codes import encode_corpus
    from delaykit.data.synth import SynthConfig, _work, plan

    voices = sorted(ACCENT_VOICES)
    if not all(festival_available(v) for v in voices):
        pytest.skip("festival with the voices of delaykit.data.festival_accents is not installed")
    config = SynthConfig(seed=5, accent_prob=1.0, noise_prob=0.0, bandlimit_prob=0.0)
    utterances = plan(config, 12)
    assert {u.voice.removeprefix("festival:") for u in utterances} <= set(voices)
    assert len({u.voice for u in utterances}) >= 3
    # 0 draws nothing: earlier corpora plan the same voices as before the option existed.
    assert [u.voice for u in plan(SynthConfig(seed=5), 8)] == [u.voice for u in plan(SynthConfig(seed=5,
                                                                                                accent_prob=0.0), 8)]
    assert not any(":" in u.voice for u in plan(SynthConfig(seed=5, split="heldout", accent_prob=1.0), 6))
    row = _work((utterances[0], config, str(tmp_path)))
    assert row["phonemes_only"] is True and row["voice"] == utterances[0].voice
    starts = np.array([start for _, start in row["phonemes"]])
    assert np.all(np.diff(starts) >= 0) and starts[-1] < row["duration"]
    assert {name for name, _ in row["phonemes"]} - {"_"}  # it spoke
    with pytest.raises(ValueError, match="phonemes-only"):
        encode_corpus([row], codec=None)
