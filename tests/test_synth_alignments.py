"""Word times of synthetic speech: espeak's WORD events mapped onto the sentence's words, checked against the
speech energy; deterministic synthesis; manifests and the JSON beside each WAV."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from delaykit.data import synth
from delaykit.data.manifest import check_corpus, read_corpus

needs_espeak = pytest.mark.skipif(not synth.espeak_available(),
                                  reason="the espeak-ng C library is not installed (apt-get install espeak-ng)")


def frame_levels(samples: np.ndarray, rate: int, frame_seconds: float = 0.01) -> tuple[np.ndarray, int]:
    """dB of each frame relative to the loudest one, and the frame length in samples."""
    frame = int(frame_seconds * rate)
    count = samples.shape[0] // frame
    rms = np.sqrt(np.mean(samples[: count * frame].astype(np.float64).reshape(count, frame) ** 2, axis=1))
    return 20 * np.log10(rms / rms.max() + 1e-12), frame


def speech_onset(samples: np.ndarray, rate: int, floor_db: float = -30.0) -> float:
    """Seconds to the first 10 ms frame within ``floor_db`` of the loudest (another threshold and frame than
    the module's own, so the test does not just repeat it)."""
    levels, frame = frame_levels(samples, rate)
    return int(np.nonzero(levels > floor_db)[0][0]) * frame / rate


def longest_pause(samples: np.ndarray, rate: int, floor_db: float = -50.0) -> tuple[float, float]:
    """Start and end (seconds) of the longest run of quiet frames between the first and last loud ones."""
    levels, frame = frame_levels(samples, rate)
    loud = np.nonzero(levels > floor_db)[0]
    quiet = levels[loud[0]: loud[-1]] <= floor_db
    best, run_start = (0, 0), None
    for i, is_quiet in enumerate(np.append(quiet, False)):
        if is_quiet and run_start is None:
            run_start = i
        elif not is_quiet and run_start is not None:
            best = max(best, (run_start, i), key=lambda span: span[1] - span[0])
            run_start = None
    return (loud[0] + best[0]) * frame / rate, (loud[0] + best[1]) * frame / rate


def spoken(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50) -> synth.Speech:
    return synth.speak_clean(text, voice, rate, pitch)


# -- mapping events to words (no espeak needed) ------------------------------------------------------------


def fake_speech(word_events, phoneme_events=(), seconds: float = 2.0) -> synth.RawSpeech:
    rate = 1000  # one sample per millisecond keeps the numbers readable
    samples = np.zeros(int(seconds * rate), dtype=np.int16)
    samples[:1800] = 1000  # speech until 1.8 s
    return synth.RawSpeech(samples, rate, list(word_events), list(phoneme_events))


def test_events_map_to_words_despite_espeak_quirks():
    text = "Look, what that was!"  # words start at characters 1, 7, 12, 17 (1-based)
    events = [(1, 5, 0), (7, 4, 500), (12, 4, 900), (13, 4, 1300),  # "was!" placed inside "that" (as espeak does)
              (6, 0, 1750)]  # a length-0 event of no word
    words = synth.align_words(text, fake_speech(events), lambda word: 1)
    assert [w.text for w in words] == ["Look,", "what", "that", "was!"]
    assert [(w.start, w.end) for w in words] == [(0.0, 0.5), (0.5, 0.9), (0.9, 1.3), (1.3, 1.8)]
    assert {w.speaker for w in words} == {"SPEAKER_MAIN"}


def test_words_spoken_as_one_are_split_by_their_phonemes():
    text = "sat in the garden"  # espeak speaks "in the" as one word: one event for both
    events = [(1, 3, 0), (5, 2, 400), (12, 6, 800)]
    phonemes = [(0, "s"), (100, "a"), (200, "t"), (410, "I"), (500, "n"), (600, "D"), (700, "@"), (810, "g"),
                (1790, "_:")]
    words = synth.align_words(text, fake_speech(events, phonemes), {"the": 2}.get)
    assert [(w.text, w.start, w.end) for w in words][1:3] == [("in", 0.4, 0.6), ("the", 0.6, 0.8)]


# -- espeak ------------------------------------------------------------------------------------------------


@needs_espeak
def test_word_times_increase_inside_the_audio_from_the_speech_onset():
    text = "Please carry the yellow umbrella to the station before dinner."
    speech = spoken(text)
    duration = speech.samples.shape[0] / speech.sample_rate
    assert [w.text for w in speech.words] == text.split()
    starts = [w.start for w in speech.words]
    assert all(a < b for a, b in itertools.pairwise(starts))
    assert all(w.start < w.end <= duration for w in speech.words)
    assert all(a.end == b.start for a, b in itertools.pairwise(speech.words))
    assert abs(speech.words[0].start - speech_onset(speech.samples, speech.sample_rate)) < 0.04
    assert duration - speech.words[-1].end > 0.1  # the last word ends with the speech, not the end pause


@needs_espeak
def test_a_pause_belongs_to_the_word_before_it():
    speech = spoken("Well, what a strange idea that was!")
    pause_start, pause_end = longest_pause(speech.samples, speech.sample_rate)
    assert pause_end - pause_start > 0.1  # the comma's pause
    well, what = speech.words[:2]
    assert well.start < pause_start and well.end == what.start
    assert pause_end - 0.015 <= what.start <= pause_end + 0.04


@needs_espeak
def test_every_word_gets_a_time_when_espeak_merges_or_misplaces_events():
    # "in the" and "for the" are single words in espeak's dictionary; "that was" gets a misplaced event.
    text = "They waited in the garden for the bus, but what a long day that was!"
    speech = spoken(text)
    assert [w.text for w in speech.words] == text.split()
    durations = {w.text: w.end - w.start for w in speech.words}
    assert all(0.02 < d < 1.0 for d in durations.values()), durations


@needs_espeak
def test_synthesis_is_deterministic_whatever_was_spoken_before():
    first = spoken("Remember to pack the blue suitcase.", "en-gb+klatt2", 150, 40)
    spoken("Something else entirely, said in between.", "en-us+whisper", 230, 70)
    again = spoken("Remember to pack the blue suitcase.", "en-gb+klatt2", 150, 40)
    assert np.array_equal(first.samples, again.samples) and first.words == again.words
    utt = synth.plan(synth.SynthConfig(seed=4), 1)[0]
    first = synth.render(utt, synth.SynthConfig(seed=4))
    audio, words = first.audio, first.words
    second = synth.render(utt, synth.SynthConfig(seed=4))
    audio2, words2 = second.audio, second.words
    assert np.array_equal(audio, audio2) and words == words2


@needs_espeak
def test_unknown_voice_is_a_clear_error():
    with pytest.raises(synth.EspeakError, match="no voice"):
        spoken("hello", voice="xx-nonexistent")


@needs_espeak
def test_corpus_rows_carry_alignments_and_json_beside_each_wav(tmp_path):
    out = tmp_path / "corpus"
    manifest = synth.synthesize(out, synth.SynthConfig(hours=0.002, seed=1, workers=1), log=io.StringIO())
    rows = read_corpus(manifest)
    assert rows and len(rows) == len(list(out.glob("wavs/*/*.wav"))) == len(list(out.glob("wavs/*/*.json")))
    for row in rows:
        words = [word for word, _, _ in row["alignments"]]
        assert words == row["text"].split()
        sidecar = json.loads(Path(row["path"]).with_suffix(".json").read_text())
        assert sidecar == {"alignments": row["alignments"]}
        assert row["alignments"][-1][1][1] <= row["duration"]
    good, report = check_corpus(rows, speakers={"SPEAKER_MAIN"}, tolerance=0.0)
    assert len(good) == len(rows) and not report.problems
    manifest.unlink()  # the WAV + JSON pairs alone are the same corpus
    pairs = read_corpus(out)
    assert [(r["text"], r["alignments"]) for r in pairs] == [(r["text"], r["alignments"]) for r in rows]
    assert all(abs(p["duration"] - r["duration"]) < 1e-3 for p, r in zip(pairs, rows))


@needs_espeak
def test_an_interrupted_synthesis_leaves_no_manifest(tmp_path, monkeypatch):
    # Scripts skip a corpus whose manifest exists: a stopped run must not leave one that reads as finished.
    out = tmp_path / "corpus"
    config = synth.SynthConfig(hours=1.0, seed=1, workers=1)
    first = synth.synthesize(out, synth.SynthConfig(hours=0.001, seed=1, workers=1), log=io.StringIO())
    planned = synth.plan

    def plan_then_stop(config, count, start=0):
        if start > 0:
            raise KeyboardInterrupt
        return planned(config, 2, start)

    monkeypatch.setattr(synth, "plan", plan_then_stop)
    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(out, config, log=io.StringIO())
    assert not first.exists()  # the earlier corpus's manifest went before its WAVs were overwritten
    assert len((out / "manifest.jsonl.partial").read_text().splitlines()) == 2
    monkeypatch.undo()
    manifest = synth.synthesize(out, synth.SynthConfig(hours=0.001, seed=1, workers=1), log=io.StringIO())
    assert manifest.exists() and not (out / "manifest.jsonl.partial").exists()


def test_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(synth, "_library", None)
    monkeypatch.setattr(synth, "LIBRARY_NAMES", ("libespeak-ng-missing.so.9",))
    monkeypatch.setattr(synth.ctypes.util, "find_library", lambda name: None)
    assert not synth.espeak_available()
    with pytest.raises(synth.EspeakError, match="not installed"):
        synth.synthesize("unused", synth.SynthConfig(hours=0.001))


@needs_espeak
def test_reverberation_smears_energy_into_pauses_and_keeps_times():
    from delaykit.data.synth import SynthConfig, Utterance, _reverberate, render

    rng = np.random.default_rng(0)
    clicks = np.zeros(22_050)
    clicks[::5512] = 1.0  # four clicks in silence
    wet = _reverberate(clicks, 22_050, rng)
    assert wet.shape == clicks.shape and abs(np.sqrt(np.mean(wet**2)) - np.sqrt(np.mean(clicks**2))) < 1e-9
    gap = slice(100, 5000)  # between the first two clicks
    assert np.abs(clicks[gap]).max() == 0 and np.abs(wet[gap]).max() > 1e-3  # the room's tail
    utterance = Utterance(0, "Please sell six soups before dinner.", "en-us", 170, 50, seed=3)
    dry = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0))
    dry_audio, dry_words = dry.audio, dry.words
    wet = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0, reverb_prob=1.0))
    wet_audio, wet_words = wet.audio, wet.words
    assert wet_words == dry_words and wet_audio.shape == dry_audio.shape
    assert not np.allclose(wet_audio, dry_audio)
    again = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0, reverb_prob=1.0)).audio
    assert np.array_equal(again, wet_audio)


@pytest.mark.skipif(__import__("shutil").which("flite") is None, reason="flite is not installed")
def test_flite_training_voices_with_word_times():
    from delaykit.data.cmu_phones import ESPEAK_OF_CMU_PHONE
    from delaykit.data.synth import SynthConfig, Utterance, plan, render, speak_flite

    utterances = plan(SynthConfig(seed=20, flite_prob=1.0), 4)
    assert {u.voice for u in utterances} <= {"flite:kal", "flite:kal16"}
    assert plan(SynthConfig(seed=20), 4)[0].voice == plan(SynthConfig(seed=20, flite_prob=0.0), 4)[0].voice
    heldout = plan(SynthConfig(seed=1, split="heldout", flite_prob=1.0), 4)
    assert not any(u.voice.startswith("flite:") for u in heldout)  # held-out voices stay espeak's
    spoken = render(utterances[0], SynthConfig(noise_prob=0.0, bandlimit_prob=0.0))
    audio, words = spoken.audio, spoken.words
    assert [w.text for w in words] == utterances[0].text.split() and spoken.voice == utterances[0].voice
    starts = [w.start for w in words]
    assert starts == sorted(starts) and 0.1 < starts[0] < 0.4 and words[-1].end <= audio.shape[0] / 24_000
    with pytest.raises(ValueError, match="not a flite training voice"):
        speak_flite(Utterance(0, "hello", "flite:slt", 170, 50, 0))  # evaluation voices are refused
    names = [name for name, _ in spoken.phonemes]  # flite's phones as espeak-ng's, for the semantic encoder
    assert names[0] == "_" and len(names) > 2 * len(words) and set(names) <= set(ESPEAK_OF_CMU_PHONE.values())
    assert [start for _, start in spoken.phonemes] == sorted(start for _, start in spoken.phonemes)


@pytest.mark.skipif(__import__("shutil").which("flite") is None, reason="flite is not installed")
def test_flite_phones_become_espeak_phonemes():
    from delaykit.data.flite import flite_speech

    _, _, timed, phonemes = flite_speech("hello world", "kal16")
    assert [name for name, _ in phonemes] == ["_", "h", "@", "l", "oU", "w", "3:", "l", "d", "_"]
    assert phonemes[0][1] == 0.0 and phonemes[1][1] == pytest.approx(timed[0][1])  # "hello" starts with its h
    assert phonemes[5][1] == pytest.approx(timed[1][1])  # "world" with its w


def test_festival_training_voices_with_word_times():
    from delaykit.data.festival import festival_available
    from delaykit.data.synth import SynthConfig, Utterance, plan, render, speak_festival

    if not festival_available("ked_diphone") or not festival_available("kal_diphone"):
        pytest.skip("festival with festvox-kallpc16k and festvox-kdlpc16k is not installed")
    utterances = plan(SynthConfig(seed=21, festival_prob=1.0), 6)
    assert {u.voice for u in utterances} == {"festival:kal_diphone", "festival:ked_diphone"}
    assert [u.voice for u in plan(SynthConfig(seed=21), 6)] == [u.voice for u in plan(SynthConfig(seed=21), 6)]
    assert plan(SynthConfig(seed=21), 3)[0].voice == plan(SynthConfig(seed=21, festival_prob=0.0), 3)[0].voice
    assert not any(":" in u.voice for u in plan(SynthConfig(seed=1, split="heldout", festival_prob=1.0), 4))
    utterance = Utterance(0, "Dr. Smith's train leaves at ten forty-five, in 1985.", "festival:ked_diphone",
                          120, 50, 0)
    spoken = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0))
    assert spoken.voice == "festival:ked_diphone"
    assert [w.text for w in spoken.words] == utterance.text.split()
    names = [name for name, _ in spoken.phonemes]  # Festival's phones as espeak-ng's: "Dr. Smith" is "d A: k t 3: r s ..."
    assert names[0] == "_" and names[1:8] == ["d", "A:", "k", "t", "3:", "r", "s"]
    assert spoken.phonemes[1][1] == pytest.approx(spoken.words[0].start, abs=1e-3)  # "Dr." starts with its d
    starts, ends = [w.start for w in spoken.words], [w.end for w in spoken.words]
    assert starts == sorted(starts) and all(s < e for s, e in zip(starts, ends))
    assert 0.05 < starts[0] < 0.5 and ends[-1] <= spoken.audio.shape[0] / 24_000
    faster = speak_festival(Utterance(0, utterance.text, "festival:ked_diphone", 240, 50, 0))
    assert faster is not None and faster.words[-1].end < 0.7 * ends[-1]  # the rate reaches Festival
    with pytest.raises(ValueError, match="not a Festival training voice"):
        speak_festival(Utterance(0, "hello", "festival:us_slt_arctic_hts", 170, 50, 0))


@needs_espeak
def test_named_voices_and_clean_speech_for_a_tts_corpus():
    from delaykit.data.synth import CLEAN, SynthConfig, plan, render

    names = ("en-us+f2", "en-gb+m3")
    config = SynthConfig(seed=5, voice_names=names, **CLEAN)
    utterances = plan(config, 12)
    assert {u.voice for u in utterances} == set(names)  # only the named voices speak
    assert [u.text for u in utterances] == [u.text for u in plan(SynthConfig(seed=5), 12)]  # same sentences
    assert [u.voice for u in plan(SynthConfig(seed=5), 12)] != [u.voice for u in utterances]
    for utterance in utterances[:3]:
        spoken = render(utterance, config)
        level_db = 10 * np.log10(np.mean(spoken.audio.astype(np.float64) ** 2))
        assert -24.5 < level_db < -19.5
        raw = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0, level_db=(-22.0, -22.0)))
        gain = float(np.dot(spoken.audio, raw.audio) / np.dot(raw.audio, raw.audio))
        assert np.abs(spoken.audio - gain * raw.audio).max() < 1e-4  # only the level differs: no noise, no filter


@needs_espeak
def test_cli_makes_a_clean_corpus_of_named_voices(tmp_path):
    from click.testing import CliRunner

    from delaykit.cli import main

    out = tmp_path / "corpus"
    args = ["data", "synth", "--out", str(out), "--hours", "0.002", "--seed", "3", "--workers", "1"]
    result = CliRunner().invoke(main, [*args, "--clean", "--voices", "en-us+f2, en-gb+f3"])
    assert result.exit_code == 0, result.output
    assert {row["voice"] for row in read_corpus(out)} <= {"en-us+f2", "en-gb+f3"}
    config = json.loads((out / "synth_config.json").read_text())
    assert config["voice_names"] == ["en-us+f2", "en-gb+f3"] and config["noise_prob"] == 0.0
    assert config["bandlimit_prob"] == 0.0 and config["level_db"] == [-24.0, -20.0]
    refused = CliRunner().invoke(main, [*args, "--clean", "--reverb", "0.3"])
    assert refused.exit_code == 2 and "exclude each other" in refused.output
    for other in ("--flite", "--festival", "--accents"):  # shares of other synthesizers would be overridden
        refused = CliRunner().invoke(main, [*args, "--voices", "en-us+f2", other, "0.3"])
        assert refused.exit_code == 2 and "leave out --flite, --festival and --accents" in refused.output


@needs_espeak
def test_cli_open_vocabulary_records_where_its_names_come_from(tmp_path):
    from click.testing import CliRunner

    from delaykit.cli import main
    from delaykit.data.open_names import open_vocabulary_source

    out = tmp_path / "corpus"
    args = ["data", "synth", "--out", str(out), "--hours", "0.002", "--seed", "3", "--workers", "1"]
    result = CliRunner().invoke(main, [*args, "--vocabulary", "open"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "synth_config.json").read_text())
    assert config["vocabulary"] == "open" and config["open_vocabulary_source"] == open_vocabulary_source()
    assert open_vocabulary_source().startswith("faker ")


@needs_espeak
def test_missing_festival_voice_fails_before_synthesis_with_the_package_to_install(tmp_path):
    from delaykit.data.festival import require_voices
    from delaykit.data.synth import SynthConfig, synthesize

    with pytest.raises(RuntimeError, match="apt-get install"):
        require_voices(["no_such_diphone"])
    with pytest.raises(RuntimeError, match="apt-get install"):
        synthesize(tmp_path, SynthConfig(hours=0.01, voice_names=("festival:no_such_diphone",)))
    assert not (tmp_path / "manifest.jsonl").exists()


@needs_espeak
def test_speed_up_raises_the_voice_and_scales_its_word_times():
    from delaykit.data.synth import SynthConfig, Utterance, render

    utterance = Utterance(0, "Please sell six soups before dinner.", "en-us", 170, 30, seed=5)
    plain = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0))
    fast = render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0, speed_up=1.3))
    speed = plain.audio.shape[0] / fast.audio.shape[0]
    assert 1.02 < speed <= 1.3 + 1e-3  # a factor drawn from [1, 1.3]
    for slow_word, fast_word in zip(plain.words, fast.words, strict=True):
        assert slow_word.text == fast_word.text
        assert abs(slow_word.start / speed - fast_word.start) < 2e-3 and abs(slow_word.end / speed - fast_word.end) < 2e-3
    assert [name for name, _ in fast.phonemes] == [name for name, _ in plain.phonemes]

    def centroid(audio: np.ndarray) -> float:  # spectral centroid, Hz: formants and pitch move it up
        power = np.abs(np.fft.rfft(audio)) ** 2
        return float((np.fft.rfftfreq(audio.shape[0], 1 / 24_000) * power).sum() / power.sum())

    assert centroid(fast.audio) > 1.02 * centroid(plain.audio)
    held_out = SynthConfig(noise_prob=0.0, bandlimit_prob=0.0, speed_up=1.3, split="heldout")
    assert render(utterance, held_out).audio.shape == plain.audio.shape  # evaluation speech is left alone
    assert np.array_equal(render(utterance, SynthConfig(noise_prob=0.0, bandlimit_prob=0.0, speed_up=1.3)).audio,
                          fast.audio)  # drawn from the utterance's seed
