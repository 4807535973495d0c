"""Checkpoints that use the shipped codec instead of bundling one (``codec_from``), and what export checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_lm import tiny_config, tokenizer, toy_corpus  # noqa: F401 (fixture)

import delaykit
from delaykit.checkpoints import default_checkpoint_dir, resolve_checkpoint
from delaykit.errors import CheckpointError
from delaykit.train.lm import LMTrainer, export_lm


@pytest.fixture(scope="module")
def tts_run(tokenizer, tmp_path_factory):  # noqa: F811
    """A 2-step TTS run on the toy corpus, nominally encoded by the shipped codec."""
    run = tmp_path_factory.mktemp("tts") / "run"
    LMTrainer(tiny_config("tts", max_steps=2, codec="default"), toy_corpus(), tokenizer, run).fit()
    return run


def test_export_names_the_shipped_codec_instead_of_copying_it(tts_run, tmp_path):
    target = export_lm(tts_run, tmp_path / "tts", codec_from="default")
    config = json.loads((target / "config.json").read_text())
    assert config["codec_from"] == "default" and config["mimi_name"] is None
    assert not list(target.glob("codec*"))  # no codec file of its own
    files = resolve_checkpoint(target)
    assert files.codec_weights == default_checkpoint_dir() / "codec.safetensors"
    model = delaykit.load(target, device="cpu")
    shipped = delaykit.load("default", device="cpu").engine.codec
    for key, value in shipped.state_dict().items():  # encoders and decoder alike
        assert torch.equal(value, model.engine.codec.state_dict()[key]), key
    audio, _ = model.synthesize("one two")
    assert audio.shape[-1] > 0 and torch.isfinite(audio).all()


def test_export_refuses_a_codec_that_encodes_otherwise(tokenizer, tmp_path):  # noqa: F811
    from test_codec_cli import make_checkpoint

    make_checkpoint(tmp_path / "codec")
    LMTrainer(tiny_config("asr", max_steps=1, codec=str(tmp_path / "codec")), toy_corpus(), tokenizer,
              tmp_path / "run").fit()
    with pytest.raises(ValueError, match="does not encode like"):
        export_lm(tmp_path / "run", tmp_path / "asr", codec_from="default")
    assert not (tmp_path / "asr").exists()


def test_encodes_like_ignores_the_decoder_only():
    codec = delaykit.load("default", device="cpu").engine.codec
    other = delaykit.load("default", device="cpu").engine.codec
    with torch.no_grad():
        next(other.decoder.parameters()).add_(1.0)
        assert codec.encodes_like(other)
        other.quantizer.state_dict()[next(iter(other.quantizer.state_dict()))].add_(1.0)
        assert not codec.encodes_like(other)


@pytest.mark.parametrize("change, message", [
    ({"codec_from": "../default"}, "must name a shipped checkpoint"),
    ({"codec_from": "default", "mimi_name": "codec.safetensors"}, "keep one"),
    ({"codec_from": None, "codec_patch": "codec_patch.safetensors"}, "it needs codec_from"),
])
def test_bad_codec_references_are_refused(tts_run, tmp_path, change, message):
    target = export_lm(tts_run, tmp_path / "tts", codec_from="default")
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=message):
        resolve_checkpoint(target)


def test_models_not_trained_for_guidance_refuse_cfg(tts_run, tmp_path):
    from click.testing import CliRunner

    from delaykit.cli import main

    target = export_lm(tts_run, tmp_path / "tts", codec_from="default")
    synthesizer = delaykit.load(target, device="cpu").synthesizer()
    assert not synthesizer.supports_guidance and synthesizer.generator.options.cfg_coef == 1.0
    script = tmp_path / "script.txt"
    script.write_text("one two")
    runner = CliRunner()
    refused = runner.invoke(main, ["tts", str(script), "--model", str(target), "-o", str(tmp_path / "a.wav"),
                                   "--cfg", "2"])
    assert refused.exit_code == 2 and "classifier-free guidance" in refused.output
    spoken = runner.invoke(main, ["tts", str(script), "--model", str(target), "-o", str(tmp_path / "b.wav")])
    assert spoken.exit_code == 0, spoken.output
    assert np.isfinite(delaykit.audio.load_audio(tmp_path / "b.wav", 24000)).all()


def test_tts_evaluation_scores_what_the_recognisers_hear(tts_run, tmp_path):
    import soundfile as sf

    from delaykit.evaluation.tts import evaluate_tts

    engine = delaykit.load(export_lm(tts_run, tmp_path / "tts", codec_from="default"), device="cpu").engine
    original = tmp_path / "original.wav"
    sf.write(original, np.zeros(24000, np.float32), 24000)
    rows = [{"text": "one two three", "path": str(original)}, {"text": "red green", "path": str(original)}]

    class Echo:  # hears the first reference whatever it is given: WER 0 on it, 2 substitutions and 1 insertion on the other: 3 / 5
        def transcribe(self, audio, sample_rate):
            assert sample_rate == 24000 and audio.ndim == 1
            return "one two three"

    class Deaf:
        def transcribe(self, audio, sample_rate):
            return ""

    report = evaluate_tts(engine, rows, {"echo": Echo(), "deaf": Deaf()}, seed=3, judge_originals=True,
                          out_dir=tmp_path / "wavs")
    assert report["wer"]["echo"] == pytest.approx(3 / 5) and report["wer"]["deaf"] == 1.0
    assert report["wer"]["echo on originals"] == pytest.approx(3 / 5)
    assert report["original_seconds_per_word"] == pytest.approx(2 / 5)
    wavs = sorted((tmp_path / "wavs").glob("*.wav"))
    assert len(wavs) == 2 and report["audio_seconds"] > 0 and report["first_audio_seconds_median"] > 0
    assert report["examples"][0]["echo"] == "one two three"
    evaluate_tts(engine, rows[:1], {"deaf": Deaf()}, seed=3, out_dir=tmp_path / "again")
    assert np.array_equal(sf.read(wavs[0])[0], sf.read(tmp_path / "again" / "0000.wav")[0])  # seeded


def _retrained_semantic_encoder(directory):
    """The shipped codec with its semantic encoder's weights moved a little (as a retrained one would be), in
    values float16 holds exactly, saved as a codec-only checkpoint."""
    from delaykit.engine import save_engine

    codec = delaykit.load("default", device="cpu").engine.codec
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in codec.semantic_encoder.named_parameters():
            moved = parameter + 0.05 * parameter.std() * torch.randn(parameter.shape, generator=generator)
            parameter.copy_(moved.half().float())
    return save_engine(directory, codec, None).directory, codec


def test_export_patches_the_shared_codec_with_a_retrained_encoder(tokenizer, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    codec_dir, retrained = _retrained_semantic_encoder(tmp_path / "codec")
    LMTrainer(tiny_config("asr", max_steps=1, codec=str(codec_dir)), toy_corpus(), tokenizer,
              tmp_path / "run").fit()
    target = export_lm(tmp_path / "run", tmp_path / "asr", codec_from="default", codec_patch=True)
    config = json.loads((target / "config.json").read_text())
    assert config["codec_from"] == "default" and config["codec_patch"] == "codec_patch.safetensors"
    patch = load_file(target / "codec_patch.safetensors")
    assert patch and all(key.startswith("semantic_encoder.") for key in patch)
    assert all(value.dtype == torch.float16 for value in patch.values())  # exact in float16: half the bytes
    codec = delaykit.load(target, device="cpu").engine.codec
    shipped = delaykit.load("default", device="cpu").engine.codec
    assert codec.encodes_like(retrained) and not codec.encodes_like(shipped)
    assert all(torch.equal(value, codec.state_dict()[key])  # everything but the patch is the shipped codec
               for key, value in shipped.state_dict().items() if key not in patch)
    audio = torch.randn(1, 1, 4 * codec.frame_size, generator=torch.Generator().manual_seed(1)) * 0.1
    assert torch.equal(codec.encode(audio, 1), retrained.encode(audio, 1))


def test_a_patch_needs_a_difference_and_a_shared_codec(tts_run, tokenizer, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="no patch"):
        export_lm(tts_run, tmp_path / "tts", codec_from="default", codec_patch=True)
    with pytest.raises(ValueError, match="set codec_from"):
        export_lm(tts_run, tmp_path / "tts", codec_patch=True)
    target = export_lm(tts_run, tmp_path / "tts", codec_from="default")
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "codec_patch": "codec_patch.safetensors"}))
    with pytest.raises(CheckpointError, match="codec_patch.safetensors"):
        resolve_checkpoint(target)  # names a file that is not there


def test_a_patch_must_fit_the_codec(tmp_path):
    from safetensors.torch import save_file

    from delaykit.engine import apply_codec_patch

    codec = delaykit.load("default", device="cpu").engine.codec
    save_file({"semantic_encoder.no_such_weight": torch.zeros(3)}, str(tmp_path / "patch.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit"):
        apply_codec_patch(codec, tmp_path / "patch.safetensors", torch.device("cpu"))


def test_export_uses_the_asr_models_patch_without_a_copy(tokenizer, tmp_path):  # noqa: F811
    """A model trained on codes of the ASR model's front end names that model's patch (``codec_patch_from``)
    and loads the shipped codec with it: what the default dialogue model hears its user through."""
    LMTrainer(tiny_config("dialogue", max_steps=1, codec="default-asr"), toy_corpus(channels=2), tokenizer,
              tmp_path / "run").fit()
    target = export_lm(tmp_path / "run", tmp_path / "dialogue", codec_from="default", codec_patch_from="default-asr")
    config = json.loads((target / "config.json").read_text())
    assert config["codec_from"] == "default" and config["codec_patch_from"] == "default-asr"
    assert "codec_patch" not in config and not list(target.glob("codec*"))  # no copy of its own
    files = resolve_checkpoint(target)
    assert files.codec_patch == default_checkpoint_dir("default-asr") / "codec_patch.safetensors"
    codec = delaykit.load(target, device="cpu").engine.codec
    hearing = delaykit.load("default-asr", device="cpu").engine.codec
    assert codec.encodes_like(hearing) and not codec.encodes_like(delaykit.load("default", device="cpu").engine.codec)
    with pytest.raises(ValueError, match="does not encode like"):  # trained on the plain codec's codes
        export_lm(tmp_path / "run", tmp_path / "other", codec="default", codec_from="default",
                  codec_patch_from="default-asr")
    with pytest.raises(ValueError, match="not both"):
        export_lm(tmp_path / "run", tmp_path / "other", codec_from="default", codec_patch=True,
                  codec_patch_from="default-asr")


@pytest.mark.parametrize("change, message", [
    ({"codec_patch_from": "default-tts"}, "must carry a codec patch"),
    ({"codec_patch_from": "../default-asr"}, "must name a shipped checkpoint"),
    ({"codec_patch_from": "default-asr", "codec_patch": "codec_patch.safetensors"}, "keep one"),
    ({"codec_patch_from": "default-asr", "codec_from": None}, "it needs codec_from"),
])
def test_bad_patch_references_are_refused(tts_run, tmp_path, change, message):
    target = export_lm(tts_run, tmp_path / "tts", codec_from="default")
    config = json.loads((target / "config.json").read_text())
    if "codec_patch" in change:  # a patch file of its own beside the borrowed one
        (target / "codec_patch.safetensors").write_bytes(
            (default_checkpoint_dir("default-asr") / "codec_patch.safetensors").read_bytes())
    (target / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=message):
        resolve_checkpoint(target)


def test_use_decoder_of_takes_the_decode_path_and_keeps_the_codes():
    codec = delaykit.load("default", device="cpu").engine.codec
    retrained = delaykit.load("default", device="cpu").engine.codec
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (1, 1, 4 * 1920)).astype(np.float32))
    with torch.no_grad():
        codes = codec.encode(audio)  # [1, 8, 4]
        next(retrained.decoder.parameters()).add_(0.5)  # another decoder of the same codes
        next(retrained.semantic_encoder.parameters()).add_(0.5)  # and another encoder: not taken
        expected = retrained.decode(codes)
        assert not torch.equal(codec.decode(codes), expected)
        codec.use_decoder_of(retrained)
        assert torch.equal(codec.decode(codes), expected)
        assert torch.equal(codec.encode(audio), codes)
        other_codes = delaykit.load("default", device="cpu").engine.codec
        next(iter(other_codes.quantizer.state_dict().values())).add_(1.0)
        with pytest.raises(ValueError, match="other codebooks"):
            codec.use_decoder_of(other_codes)


def test_eval_tts_decodes_with_the_decoder_asked_for(tts_run, tmp_path):
    from click.testing import CliRunner

    from delaykit.cli import main
    from delaykit.engine import save_engine

    target = export_lm(tts_run, tmp_path / "tts", codec_from="default")
    retrained = delaykit.load("default", device="cpu").engine.codec
    with torch.no_grad():
        next(retrained.decoder.parameters()).mul_(1.5)
    save_engine(tmp_path / "decoder", retrained, None)
    corpus = tmp_path / "texts"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text(json.dumps({"path": str(corpus / "0.wav"), "text": "one two"}) + "\n")
    heard = {}
    for name, extra in (("shipped", []), ("retrained", ["--decoder", str(tmp_path / "decoder")])):
        result = CliRunner().invoke(main, ["eval", "tts", "--model", str(target), "--data", str(corpus), "--asr",
                                           "default", "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout).get("decoder") == (extra[1] if extra else None)
        heard[name] = delaykit.audio.load_audio(tmp_path / name / "0000.wav", 24000)
    assert heard["shipped"].shape == heard["retrained"].shape  # the same codes (same seed) ...
    assert np.abs(heard["shipped"] - heard["retrained"]).max() > 1e-3  # ... heard through another decoder
    with torch.no_grad():
        next(iter(retrained.quantizer.state_dict().values())).add_(1.0)
    save_engine(tmp_path / "other-codes", retrained, None)
    result = CliRunner().invoke(main, ["eval", "tts", "--model", str(target), "--data", str(corpus), "--asr",
                                       "default", "--decoder", str(tmp_path / "other-codes")])
    assert result.exit_code == 2 and "other codebooks" in result.output
