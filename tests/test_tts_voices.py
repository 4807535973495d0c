"""Named voices: voice attributes as conditions, corpora that record who spoke, per-frame conditions in
training, warm starts that begin silent, and a synthesizer that speaks in the voice it is asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_codec_cli import make_checkpoint
from test_train_lm import WORDS, tiny_config, tokenizer, toy_corpus  # noqa: F401  (tokenizer: a fixture)

from delaykit.audio import write_audio
from delaykit.data.codes import CodeCorpus, PackConfig, annotate_utterances, encode_corpus
from delaykit.lm.conditioners import LookupConditioner
from delaykit.train.lm import LMTrainer, export_lm
from delaykit.train.lm_data import frame_conditions
from delaykit.voice import (
    PITCH_VALUES,
    RATE_VALUES,
    REFERENCE_LETTERS_PER_SECOND,
    VoiceChoice,
    pitch_value,
    rate_value,
    split_voice,
    utterance_values,
)

VOICES = ("en-us+f3", "en-gb+m1", "flite:kal")


def test_voice_names_pitch_and_rate_steps():
    assert split_voice("en-gb-scotland+Alicia") == ("en-gb-scotland", "Alicia")
    assert split_voice("flite:kal") == ("flite:kal", None)
    assert [pitch_value(p) for p in (20, 32, 33, 50, 68, 69, 80, 95)] == ["-2", "-2", "-1", "0", "1", "2", "2", "2"]
    assert [rate_value(r) for r in (0.3, 0.64, 0.96, 1.0, 1.26, 9.0)] == ["0.6", "0.6", "1.0", "1.0", "1.3", "1.5"]
    assert VoiceChoice("en-us+f3", pitch=-1, rate=1.24).values() == {
        "accent": "en-us", "timbre": "f3", "pitch": "-1", "rate": "1.2"}
    assert VoiceChoice().values() == dict.fromkeys(("accent", "timbre", "pitch", "rate"))
    with pytest.raises(ValueError, match="pitch 3"):
        VoiceChoice(pitch=3).values()
    with pytest.raises(ValueError, match="rate 2.0"):
        VoiceChoice(rate=2.0).values()
    # An utterance's rate is measured on its words (16.5 letters a second is 1.0); flite voices have no pitch.
    espeak = {"voice": "en-gb+m1", "pitch": 75, "letters_per_second": 1.3 * REFERENCE_LETTERS_PER_SECOND}
    assert utterance_values(espeak) == {"accent": "en-gb", "timbre": "m1", "pitch": "2", "rate": "1.3"}
    assert utterance_values({"voice": "flite:kal", "pitch": 75, "letters_per_second": 16.5})["pitch"] is None


def test_each_frame_gets_the_voice_of_the_utterance_it_leads_to():
    utterances = [{"end": 1.0, "voice": "en-us+f3", "pitch": 50, "letters_per_second": 16.5},
                  {"end": 2.0, "voice": "en-gb+m1", "pitch": 20, "letters_per_second": 10.0}]
    values = (("accent", ("en-gb", "en-us")), ("timbre", ("f3",)), ("pitch", PITCH_VALUES), ("rate", RATE_VALUES))
    ids = frame_conditions(utterances, 30, 10.0, values)  # [4, 30]: frames of 0.1 s
    assert ids.shape == (4, 30)
    assert (ids[0, :10] == 1).all() and (ids[0, 10:] == 0).all()  # the tail after 2.0 s stays the last voice
    assert (ids[1, :10] == 0).all() and (ids[1, 10:] == 1).all()  # timbre m1 is unknown: absent (index 1)
    assert ids[2, 0] == PITCH_VALUES.index("0") and ids[2, 20] == PITCH_VALUES.index("-2")
    assert ids[3, 0] == RATE_VALUES.index("1.0") and ids[3, 20] == RATE_VALUES.index("0.6")


def test_per_frame_lookup_equals_the_single_condition():
    torch.manual_seed(0)
    lookup = LookupConditioner(3, 8, 16, possible_values=["a", "b", "c"])
    ids = torch.tensor([[0, 2, 3, 1]])  # 3 = absent
    per_frame = lookup.embed_indices(ids)  # [1, 4, 16]
    for t, value in enumerate(["a", "c", None, "b"]):
        assert torch.allclose(per_frame[0, t], lookup([value]).embedding[0, 0], atol=1e-6), value


def spoken_rows(directory, count: int = 6) -> list[dict]:
    """Short noise 'utterances' with word times, each by one of VOICES at its own pitch."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        seconds = 0.4 + 0.1 * i
        path = directory / f"{i}.wav"
        write_audio(path, (0.1 * rng.standard_normal(round(seconds * 24000))).astype(np.float32), 24000)
        words = [[WORDS[i], [0.05, seconds / 2], "SPEAKER_MAIN"], [WORDS[i + 1], [seconds / 2, seconds - 0.05],
                                                                     "SPEAKER_MAIN"]]
        rows.append({"path": str(path), "duration": seconds, "alignments": words, "voice": VOICES[i % 3],
                     "pitch": 20 + 10 * i})
    return rows


def test_corpora_record_their_utterances_and_older_ones_can_be_annotated(tmp_path):
    codec = make_checkpoint(tmp_path / "codec")
    rows = spoken_rows(tmp_path)
    corpus = encode_corpus(rows, codec, PackConfig(sequence_seconds=1.0, seed=3), log=None, codebooks=2)
    assert corpus.utterances is not None and sum(map(len, corpus.utterances)) == len(rows)
    for words, utterances in zip(corpus.words, corpus.utterances):
        assert [u["end"] for u in utterances] == [round(words[2 * j + 1].end, 3) for j in range(len(utterances))]
    corpus.save(tmp_path / "codes.npz")
    assert CodeCorpus.load(tmp_path / "codes.npz").utterances == corpus.utterances
    # A corpus saved before corpora recorded utterances gets the same ones back from its rows.
    corpus.utterances = None
    corpus.save(tmp_path / "old.npz")
    old = CodeCorpus.load(tmp_path / "old.npz")
    assert old.utterances is None
    recorded = encode_corpus(rows, codec, PackConfig(sequence_seconds=1.0, seed=3), log=None, codebooks=2).utterances
    assert annotate_utterances(old, rows).utterances == recorded
    with pytest.raises(ValueError):
        annotate_utterances(CodeCorpus.load(tmp_path / "old.npz"), rows[::-1])  # not the rows it was made from


def voiced_corpus(sequences: int = 12) -> CodeCorpus:
    """The toy corpus with each sequence's words in two utterances, of two voices, pitches and rates."""
    corpus = toy_corpus(sequences=sequences)
    corpus.utterances = []
    for index, words in enumerate(corpus.words):
        half = len(words) // 2
        corpus.utterances.append([
            {"end": words[half - 1].end, "voice": VOICES[index % 3], "pitch": 30, "letters_per_second": 12.0},
            {"end": words[-1].end, "voice": VOICES[(index + 1) % 3], "pitch": 70, "letters_per_second": 20.0}])
    return corpus


def voiced_checkpoint(tokenizer_path: str, root) -> object:
    """A tiny voice-conditioned TTS checkpoint (root/export, default voice en-gb+m1) warm-started from a plain
    one (root/plain-export), trained for a few steps."""
    make_checkpoint(root / "codec")
    codec = str(root / "codec")
    LMTrainer(tiny_config("tts", max_steps=2, codec=codec), toy_corpus(), tokenizer_path, root / "plain").fit()
    export_lm(root / "plain", root / "plain-export")
    LMTrainer(tiny_config("tts", max_steps=2, codec=codec, voice_conditions=True,
                          warm_start=str(root / "plain-export")), voiced_corpus(), tokenizer_path, root / "voiced").fit()
    return export_lm(root / "voiced", root / "export", default_voice={"voice": "en-gb+m1", "pitch": 0})


def test_voice_conditioned_training_warm_starts_silent_and_exports_named_voices(tokenizer, tmp_path):  # noqa: F811
    import delaykit
    from delaykit.modes.tts import SynthesisOptions

    make_checkpoint(tmp_path / "codec")
    codec = str(tmp_path / "codec")
    plain = LMTrainer(tiny_config("tts", max_steps=5, codec=codec), toy_corpus(), tokenizer, tmp_path / "plain")
    plain.fit()
    export_lm(tmp_path / "plain", tmp_path / "plain-export")
    voiced = LMTrainer(tiny_config("tts", max_steps=30, codec=codec, voice_conditions=True,
                                   warm_start=str(tmp_path / "plain-export")),
                       voiced_corpus(), tokenizer, tmp_path / "voiced")
    conditioners = voiced.lm.condition_provider.conditioners
    assert sorted(conditioners["accent"].possible_values) == ["en-gb", "en-us", "flite:kal"]
    assert sorted(conditioners["timbre"].possible_values) == ["f3", "m1"]
    batch = voiced.batcher.next_batch()
    assert batch.conditions is not None and batch.conditions.shape == (4, 4, 48)
    with torch.no_grad():  # the new conditions start at zero: the same losses as the model it came from
        voiced_losses = voiced.losses(batch)
        plain.lm.eval(), voiced.lm.eval()
        assert torch.allclose(voiced.model.lm(batch.codes).text_logits.nan_to_num(),
                              plain.lm(batch.codes).text_logits.nan_to_num(), atol=1e-5)
        plain.lm.train()
    assert torch.isfinite(voiced_losses["total"])
    voiced.lm.train()
    voiced.fit()
    assert conditioners["accent"].output_proj.weight.abs().sum() > 0  # it learned to use them
    with pytest.raises(ValueError, match="no voice"):
        export_lm(tmp_path / "voiced", tmp_path / "bad", default_voice={"voice": "en-us+zz"})
    export_lm(tmp_path / "voiced", tmp_path / "export", default_voice={"voice": "en-gb+m1", "pitch": 0})
    model = delaykit.load(tmp_path / "export", device="cpu")
    synthesizer = model.synthesizer(SynthesisOptions.greedy())
    assert synthesizer.voice_names[:3] == ["en-gb", "en-us", "flite:kal"]
    assert "en-us+f3" in synthesizer.voice_names and "flite:kal+f3" not in synthesizer.voice_names
    assert synthesizer.voice_choice() == VoiceChoice("en-gb+m1", pitch=0)

    def tokens(**voice) -> list[torch.Tensor]:
        options = SynthesisOptions.greedy(token_frames=True, **voice)
        with model.synthesizer(options).stream() as stream:
            stream.push_text("one two three")
            stream.end_of_text()
            return [event.tokens for event in stream.events() if hasattr(event, "index")]

    default, same, other = tokens(), tokens(voice="en-gb+m1", pitch=0), tokens(voice="flite:kal", rate=1.4)
    assert all(torch.equal(a, b) for a, b in zip(default, same)) and len(default) == len(same)
    assert len(default) != len(other) or not all(torch.equal(a, b) for a, b in zip(default, other))
    with pytest.raises(ValueError, match="no voice 'en-zz'"):
        model.synthesizer(SynthesisOptions(voice="en-zz"))
    unvoiced = delaykit.load(tmp_path / "plain-export", device="cpu")
    with pytest.raises(ValueError, match="no named voices"):
        unvoiced.synthesizer(SynthesisOptions(voice="en-us+f3"))
    assert unvoiced.synthesizer().voice_names == []


def test_voice_conditions_need_a_corpus_that_knows_its_voices(tokenizer, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="annotate"):
        LMTrainer(tiny_config("tts", voice_conditions=True), toy_corpus(), tokenizer, tmp_path / "run")


def test_condition_dropout_leaves_attributes_out(tokenizer, tmp_path):  # noqa: F811
    trainer = LMTrainer(tiny_config("tts", voice_conditions=True, condition_dropout=1.0), voiced_corpus(),
                        tokenizer, tmp_path / "run")
    conditions = trainer.batcher.next_batch().conditions  # [B, A, T]
    absent = [len(v) for _, v in trainer.spec.voice_values]
    assert all((conditions[:, a] == n).all() for a, n in enumerate(absent))


@pytest.fixture(scope="module")
def voiced_dir(tokenizer, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("voiced")
    return voiced_checkpoint(tokenizer, root), root / "plain-export"


def test_cli_lists_voices_and_speaks_in_one(voiced_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from delaykit.cli import main

    voiced, plain = voiced_dir
    runner = CliRunner()
    listed = runner.invoke(main, ["voices", "--model", str(voiced)])
    assert listed.exit_code == 0, listed.output
    names = listed.output.split("\n")
    assert names[0] == "en-gb+m1 *" and "en-us+f3" in names and "flite:kal" in names
    script = tmp_path / "script.txt"
    script.write_text("one two three\n")
    spoken = runner.invoke(main, ["tts", str(script), "-o", str(tmp_path / "out.wav"), "--model", str(voiced),
                                  "--voice", "en-us+f3", "--pitch", "1", "--rate", "1.2"])
    assert spoken.exit_code == 0, spoken.output
    assert (tmp_path / "out.wav").stat().st_size > 44
    unknown = runner.invoke(main, ["tts", str(script), "-o", str(tmp_path / "x.wav"), "--model", str(voiced),
                                   "--voice", "en-zz"])
    assert unknown.exit_code == 2 and "no voice 'en-zz'" in unknown.output
    too_fast = runner.invoke(main, ["tts", str(script), "-o", str(tmp_path / "x.wav"), "--model", str(voiced),
                                    "--rate", "3"])
    assert too_fast.exit_code == 2
    for args in (["voices", "--model", str(plain)],
                 ["tts", str(script), "-o", str(tmp_path / "y.wav"), "--model", str(plain), "--voice", "en-us+f3"]):
        refused = runner.invoke(main, args)
        assert refused.exit_code in (1, 2) and "no named voices" in refused.output, refused.output
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "manifest.jsonl").write_text(
        "\n".join(json.dumps({"path": f"{i}.wav", "text": text}) for i, text in enumerate(["one two", "three"])))
    measured = runner.invoke(main, ["eval", "voices", "--model", str(voiced), "--data", str(tmp_path / "texts"),
                                    "--setting", "en-us+f3,pitch=2", "--setting", "flite:kal,rate=0.7"])
    assert measured.exit_code == 0, measured.output
    report = json.loads(measured.output)
    assert report["voices"]["en-us+f3,pitch=2"]["pitch"] == 2 and report["voices"]["flite:kal,rate=0.7"]["rate"] == 0.7
    assert all(len(v["f0_per_text_hz"]) == 2 for v in report["voices"].values())
    bad = runner.invoke(main, ["eval", "voices", "--model", str(voiced), "--data", str(tmp_path / "texts"),
                               "--setting", "en-us+f3,speed=2"])
    assert bad.exit_code == 2
