"""`delaykit data round-trip`: a corpus rendered by a codec keeps every row's words, times and phones, and its
audio is the codec's encode-decode of the original, trimmed to the original's length."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from delaykit.audio import load_audio, write_audio
from delaykit.cli import main
from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.codec.quantizer import QuantizerConfig
from delaykit.codec.seanet import SeanetConfig
from delaykit.data.manifest import check_corpus, read_corpus
from delaykit.data.round_trip import round_trip, round_trip_corpus
from delaykit.transformer import TransformerConfig

RATE = 24_000
PCM16_STEP = 1 / 32768


def tiny_codec() -> CodecModel:
    torch.manual_seed(0)
    config = CodecConfig(
        seanet=SeanetConfig(dimension=32, n_filters=4),
        quantizer=QuantizerConfig(dimension=16, input_dimension=32, output_dimension=32, n_q=8, bins=32),
        transformer=TransformerConfig(d_model=32, num_heads=4, num_layers=2, dim_feedforward=64, context=6,
                                      layer_scale=0.01, max_chunk=8),
        num_codebooks=8)
    return CodecModel(config).eval()


@pytest.fixture
def corpus(tmp_path):
    """Two utterances whose lengths are not whole frames, with alignments and phonemes."""
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    (source / "wavs").mkdir(parents=True)
    rows = []
    for index, seconds in enumerate((1.3, 0.9)):
        t = np.arange(int(seconds * RATE)) / RATE
        audio = 0.2 * np.sin(2 * np.pi * (150 + 50 * index) * t) + 0.02 * rng.standard_normal(t.size)
        write_audio(source / "wavs" / f"{index}.wav", audio.astype(np.float32), RATE)
        rows.append({"path": f"wavs/{index}.wav", "text": f"word{index} other", "voice": "en-us",
                     "duration": round(t.size / RATE, 4),
                     "alignments": [[f"word{index}", [0.0, 0.4], "SPEAKER_MAIN"], ["other", [0.5, 0.8], "SPEAKER_MAIN"]],
                     "phonemes": [["w", 0.0, 0.1], ["3:", 0.1, 0.4]]})
    (source / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return source


def test_rows_are_kept_and_audio_is_the_codecs_rendering(corpus, tmp_path):
    codec = tiny_codec()
    manifest = round_trip_corpus(corpus, codec, tmp_path / "out", codebooks=4, codec_name="tiny")
    originals, rendered = read_corpus(corpus), read_corpus(manifest)
    assert len(rendered) == len(originals) == 2
    for before, after in zip(originals, rendered):
        assert after["round_trip"] == {"codec": "tiny", "codebooks": 4}
        assert {k: v for k, v in after.items() if k not in ("path", "round_trip")} == \
            {k: v for k, v in before.items() if k != "path"}
        original = load_audio(before["path"], RATE)
        audio = load_audio(after["path"], RATE)
        assert audio.shape == original.shape  # trimmed to the original's length: word times still hold
        expected = round_trip(codec, torch.from_numpy(original), 4).numpy()
        np.testing.assert_allclose(audio, np.clip(expected, -1, 1), atol=PCM16_STEP)
        assert np.abs(audio - original).max() > 0.05  # a real rendering, not a copy
    # the codes decoded are the first 4 codebooks' (an untrained codec's later codebooks add too little to hear)
    asked = []
    encode = codec.encode
    codec.encode = lambda audio, num_codebooks=None: asked.append(num_codebooks) or encode(audio, num_codebooks)
    round_trip_corpus(corpus, codec, tmp_path / "again", codebooks=4)
    assert asked == [4, 4]
    usable, report = check_corpus(rendered)
    assert len(usable) == 2 and not report.skipped
    config = json.loads((tmp_path / "out" / "round_trip_config.json").read_text())
    assert config["codebooks"] == 4 and config["count"] == 2


def test_count_takes_the_first_utterances(corpus, tmp_path):
    manifest = round_trip_corpus(corpus, tiny_codec(), tmp_path / "out", codebooks=2, count=1)
    rows = read_corpus(manifest)
    assert [row["text"] for row in rows] == ["word0 other"]


def test_cli_with_the_shipped_codec(corpus, tmp_path):
    out = tmp_path / "rendered"
    result = CliRunner().invoke(main, ["data", "round-trip", "--data", str(corpus), "--out", str(out),
                                       "--count", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = read_corpus(out)
    assert len(rows) == 1 and rows[0]["round_trip"] == {"codec": "default", "codebooks": 4}
    assert "round-trip: 1/1 utterances" in result.stderr
    too_many = CliRunner().invoke(main, ["data", "round-trip", "--data", str(corpus), "--out", str(tmp_path / "x"),
                                         "--codebooks", "9"])
    assert too_many.exit_code != 0 and "the codec has 8" in too_many.output


def test_the_codec_judge_hears_the_same_rendering(corpus):
    """`delaykit eval codec --judge` transcribes each original and the same round trip this module writes."""
    from delaykit.train.evaluate import judge_codec

    class EchoJudge:  # hears the originals right (the first call of each pair), the round trips as "nothing"
        def __init__(self):
            self.heard = []

        def transcribe(self, audio, rate):
            self.heard.append(audio)
            return "word0 other" if len(self.heard) % 2 else "nothing"

    codec, judge = tiny_codec(), EchoJudge()
    report = judge_codec(codec, corpus / "manifest.jsonl", judge, count=1, codebooks=4)
    original = load_audio(read_corpus(corpus)[0]["path"], RATE)
    np.testing.assert_array_equal(judge.heard[0], original)
    np.testing.assert_array_equal(judge.heard[1], round_trip(codec, torch.from_numpy(original), 4).numpy())
    assert report["judge_wer_original"] == 0 and report["judge_wer_round_trip"] == 1 and report["ratio"] is None
