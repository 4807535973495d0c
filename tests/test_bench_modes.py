"""The speed benchmarks of the modes (delaykit.evaluation.speed) on the shipped models: what each figure is
measured on, and that the reports hold them. Speeds themselves are not asserted (they are benchmarks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import delaykit
from delaykit.audio import load_audio
from delaykit.evaluation.speed import (
    benchmark_dialogue,
    benchmark_tts,
    first_audio_word_by_word,
    round_robin_frame,
)
from delaykit.modes.tts import SynthesisOptions


def test_each_item_hears_its_recording_round_robin_and_looped():
    signals = [np.arange(10, dtype=np.float32), 100 + np.arange(7, dtype=np.float32)]
    frame = round_robin_frame(signals, streams=3, step=0, frame=4)  # [3, 4]
    assert frame.tolist() == [[0, 1, 2, 3], [100, 101, 102, 103], [0, 1, 2, 3]]
    assert round_robin_frame(signals, 2, step=1, frame=4)[1].tolist() == [101, 102, 103, 104]  # 4 % 3 = 1
    short = round_robin_frame([np.ones(3, dtype=np.float32)], 1, step=0, frame=4)
    assert short.tolist() == [[1, 1, 1, 0]]  # a recording shorter than a frame is padded with silence


@pytest.fixture(scope="module")
def synthesizer():
    torch.set_num_threads(1)
    return delaykit.load("default-tts").synthesizer(SynthesisOptions(seed=0))


def test_word_by_word_first_audio_needs_only_the_first_words(synthesizer):
    text = "Hello there, this is one sentence of a good many words that keep on coming."
    seconds, pushed = first_audio_word_by_word(synthesizer, text)
    assert seconds > 0 and 1 <= pushed <= 4 < len(text.split())  # audio starts long before the text ends


def test_tts_report(synthesizer):
    rows = []
    report = benchmark_tts(synthesizer, ["Hello there.", 'One two <break time="0.3s"/> three four.'], log=rows.append)
    assert report["texts"] == len(rows) == 2 and report["audio_seconds"] > 1.0 and report["x_real_time"] > 0
    for figure in ("frame_ms", "first_audio_ms", "first_audio_word_by_word_ms"):
        assert 0 < report[figure]["median"] <= report[figure]["p90"], figure
    assert [row["words"] for row in rows] == [2, 4]  # the break tag is not a word


def test_dialogue_report():
    conversation = delaykit.load("default-dialogue").conversation()
    signal = load_audio("examples/questions.flac", conversation.codec.sample_rate)
    report = benchmark_dialogue(conversation, [signal], streams=(1, 2), frames=3)
    assert [entry["streams"] for entry in report["streams"]] == [1, 2]
    for entry in report["streams"]:
        assert 0 < entry["step_ms"]["median"] <= entry["step_ms"]["p90"]
        assert entry["x_real_time"] == pytest.approx(entry["streams"] * 80 / entry["step_ms"]["median"], rel=0.02)


def test_bench_commands(tmp_path):
    from click.testing import CliRunner

    from delaykit.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("Good morning.\n\nSee you soon.\n")
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "tts", "--text", str(texts), "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["texts"] == 2 and report["model"] == "default" and report["threads"] == 1
    assert report["decode_frames"] == 4
    result = runner.invoke(main, ["bench", "tts", "--text", str(texts), "--threads", "1", "--decode-frames", "1,4"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [run["decode_frames"] for run in report["runs"]] == [1, 4]
    ratio = report["runs"][1]["x_real_time"] / report["runs"][0]["x_real_time"]
    assert report["x_real_time_last_over_first"] == pytest.approx(ratio, abs=0.01)
    result = runner.invoke(main, ["bench", "dialogue", "--audio", "examples/questions.flac", "--streams", "1,3",
                                  "--frames", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert [entry["streams"] for entry in json.loads(result.stdout)["streams"]] == [1, 3]
    refused = runner.invoke(main, ["bench", "tts"])
    assert refused.exit_code == 2 and "--data or --text" in refused.output
