"""The shipped ASR model (checkpoints/default-asr): loads offline in its layout, reads the default codec's
phonetic codebook, recognises espeak-ng speech of sentences and voices it never trained on, streams exactly
like it transcribes offline; the CLI's outputs for examples/speech.wav match golden files.

The golden files (tests/golden/default-asr/) were written by the shipped model; after shipping a new model,
regenerate them with `python tests/test_default_asr.py` and review the diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import delaykit
from delaykit.checkpoints import default_checkpoint_dir
from delaykit.evaluation.wer import word_error_rate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "speech.wav"
GOLDEN = Path(__file__).parent / "golden" / "default-asr"
FORMATS = ("txt", "srt", "vtt", "tsv", "json")  # every format `delaykit asr` writes (and `__main__` rewrites)
# The shipped model (stage 10) gets 23.9 % on these twelve clean sentences (stage 9: 26.5 %, stage 8: 30.8 %; on
# the next 68 of the same kind 25.3 %, stage 9 29.0 %, numbers compared as digits; 17.4 % on the whole noisy
# held-out set; the held-out names and places never occur in training, so they are always wrong); the first,
# memorising attempt scored 135 % on held-out speech, and a model that stopped recognising speech scores about 100 %.
HELDOUT_WER_CEILING = 0.6


@pytest.fixture(scope="module")
def model():
    return delaykit.load("default-asr", device="cpu")


def test_layout_and_codec(model):
    transcriber = model.transcriber()
    layout = transcriber.layout
    assert model.mode == "asr" and layout.text_shift_seconds == pytest.approx(0.48)
    assert layout.fed_codebooks == 1  # the phonetic codebook only
    # Fed 0.5 s of silence first, as its training windows opened (0-1 s of lead-in): without it the first
    # words of an utterance are mostly wrong (stage 2's held-out WER: 43.6 % without, 36.7 % with it).
    assert layout.silence_prefix_seconds == pytest.approx(0.5)
    codec = model.engine.codec
    assert codec.semantic_encoder is not None and codec.frame_size == 1920
    # It uses the shipped codec rather than a copy, with its own semantic encoder (since stage 8; stage 9's, which
    # stage 10 keeps, also heard flite and Festival voices; same codebook), which its codec patch puts in place of
    # the shipped one.
    files = model.engine.files
    assert files.config["codec_from"] == "default" and files.codec_weights == default_checkpoint_dir() / "codec.safetensors"
    assert files.codec_patch == default_checkpoint_dir("default-asr") / "codec_patch.safetensors"
    shipped = delaykit.load("default", device="cpu").engine.codec
    patched = shipped.encode_path_changes(codec)
    assert patched and all(key.startswith("semantic_encoder.") for key in patched)
    own = codec.state_dict()  # all else (codebooks, acoustic encoder, decoder) is the shipped codec's
    assert all(value.equal(own[key]) for key, value in shipped.state_dict().items() if key not in patched)


def held_out_speech(count: int = 6) -> list[tuple[str, np.ndarray]]:
    """Sentences and voices of the held-out split (never trained on), spoken by espeak-ng, clean."""
    synth = pytest.importorskip("delaykit.data.synth")
    if not synth.espeak_available():
        pytest.skip("espeak-ng is not installed")
    from delaykit.audio import resample

    config = synth.SynthConfig(seed=3, split="heldout", noise_prob=0.0, bandlimit_prob=0.0)
    out = []
    for utterance in synth.plan(config, count):
        rendered = synth.render(utterance, config)
        out.append((utterance.text, resample(rendered.audio, config.sample_rate, 24_000)))
    return out


def test_recognises_held_out_speech(model):
    speech = held_out_speech(12)
    transcriber = model.transcriber()
    hypotheses = [transcriber.transcribe(audio).text for _, audio in speech]
    counts = word_error_rate([text for text, _ in speech], hypotheses, numbers=True)
    assert counts.wer < HELDOUT_WER_CEILING, list(zip([t for t, _ in speech], hypotheses))


def test_streaming_in_odd_chunks_equals_offline(model):
    from delaykit.audio import load_audio

    audio = load_audio(EXAMPLE, 24_000)
    transcriber = model.transcriber()
    offline = transcriber.transcribe(audio).words
    words = []
    with transcriber.stream(1) as stream:
        usable = audio.shape[0] // 1920 * 1920
        for start in range(0, usable, 3 * 1920):
            words += [e for e in stream.push(audio[start:min(start + 3 * 1920, usable)]) if hasattr(e, "text")]
        rest = audio[usable:]
        padded = np.pad(rest, (0, -rest.shape[0] % 1920))
        if padded.size:
            words += [e for e in stream.push(padded) if hasattr(e, "text")]
        words += [e for e in stream.flush(padded_samples=padded.shape[0] - rest.shape[0]) if hasattr(e, "text")]
    assert [(w.text, round(w.start, 3)) for w in words] == [(w.text, round(w.start, 3)) for w in offline]
    assert offline, "the shipped model says nothing about the example"


def cli_output(name: str) -> str:
    from click.testing import CliRunner

    from delaykit.cli import main

    result = CliRunner().invoke(main, ["asr", str(EXAMPLE), "-f", name])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("name", FORMATS)
def test_cli_output_matches_golden(name):
    assert cli_output(name) == (GOLDEN / f"speech.{name}").read_text(encoding="utf-8")


if __name__ == "__main__":  # regenerate the golden files
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        (GOLDEN / f"speech.{fmt}").write_text(cli_output(fmt), encoding="utf-8")
        print(f"wrote {GOLDEN / f'speech.{fmt}'}", file=sys.stderr)
