"""The LM pipeline from the command line: check -> encode -> tokenizer -> train lm -> export -> eval asr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from test_codec_cli import make_checkpoint

from delaykit.audio import write_audio
from delaykit.cli import main

RATE = 24_000
WORDS = "one two three four five six".split()


def make_corpus(directory, count: int = 6) -> None:
    """Folders of wav + json pairs (the moshi-finetune layout): 0.3 s of tone per word."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        words = list(rng.choice(WORDS, 4))
        t = np.arange(int(0.3 * RATE)) / RATE
        audio = np.concatenate([0.2 * np.sin(2 * np.pi * (200 + 50 * WORDS.index(w)) * t) for w in words])
        write_audio(directory / f"{index}.wav", audio.astype(np.float32), RATE)
        alignments = [[w, [0.3 * i, 0.3 * (i + 1)], "SPEAKER_MAIN"] for i, w in enumerate(words)]
        (directory / f"{index}.json").write_text(json.dumps({"alignments": alignments}))
    write_audio(directory / "broken.wav", np.zeros(RATE // 2, np.float32), RATE)  # a word past its end
    (directory / "broken.json").write_text(json.dumps({"alignments": [["x", [0.1, 2.0], "SPEAKER_MAIN"]]}))


def invoke(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_pipeline(tmp_path):
    make_checkpoint(tmp_path / "codec")
    make_corpus(tmp_path / "data")
    checked = CliRunner().invoke(main, ["data", "check", str(tmp_path / "data")])
    assert checked.exit_code == 1 and "6 of 7 rows kept, 1 skipped" in checked.output  
    out = invoke("data", "encode", "--data", tmp_path / "data", "--out", tmp_path / "codes.npz",
                 "--codec", tmp_path / "codec", "--sequence-seconds", 2)
    assert "6 of 7 rows kept" in out
    invoke("train", "tokenizer", "--data", tmp_path / "data", "--out", tmp_path / "spm.model", "--vocab-size", 30)
    tiny = ["model.dim=32", "model.num_heads=2", "model.num_layers=1", "model.card=32", "window_frames=32",
            "batch_size=2", "max_steps=3", "log_every=1", f"codec={tmp_path / 'codec'}"]
    sets = [arg for item in tiny for arg in ("--set", item)]
    invoke("train", "lm", "--mode", "asr", "--codes", tmp_path / "codes.npz", "--tokenizer", tmp_path / "spm.model",
           "--out", tmp_path / "run", *sets)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    invoke("train", "lm", "--codes", tmp_path / "codes.npz", "--out", tmp_path / "run", "--resume",
           "--set", "max_steps=4")  # the run's own config and tokenizer
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4
    invoke("train", "lm", "--codes", tmp_path / "codes.npz", "--out", tmp_path / "run", "--resume",
           "--set", "max_steps=6", "--valid-codes", tmp_path / "codes.npz", "--set", "valid_every=1")
    validated = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-2:]
    assert all("valid_total" in row for row in validated)
    invoke("train", "export-lm", tmp_path / "run", tmp_path / "asr-best", "--best")
    assert (tmp_path / "asr-best" / "model.safetensors").is_file()
    png = invoke("train", "plot", tmp_path / "run").strip()
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    invoke("train", "export-lm", tmp_path / "run", tmp_path / "asr")
    stt = json.loads((tmp_path / "asr" / "config.json").read_text())["stt_config"]
    assert stt["audio_silence_prefix_seconds"] == 0.5  # the middle of the packed sequences' 0-1 s lead-in
    invoke("train", "export-lm", tmp_path / "run", tmp_path / "asr-unprefixed", "--silence-prefix", 0)
    unprefixed = json.loads((tmp_path / "asr-unprefixed" / "config.json").read_text())["stt_config"]
    assert unprefixed["audio_silence_prefix_seconds"] == 0.0
    report = json.loads(invoke("eval", "asr", "--model", tmp_path / "asr", "--data", tmp_path / "data",
                               "--count", 3))
    assert report["utterances"] == 3 and report["reference_words"] == 12 and 0 <= report["wer"]
    speed = json.loads(invoke("bench", "asr", "--model", tmp_path / "asr", "--data", tmp_path / "data",
                              "--count", 2, "--streams", "1,3", "--frames", 3).split("\n", 2)[-1])
    assert [entry["streams"] for entry in speed["streams"]] == [1, 3]
    assert all(entry["step_ms_median"] > 0 for entry in speed["streams"])
