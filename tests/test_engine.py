"""Whole checkpoints load into engines that equal the reference, in Kyutai's layout and in delaykit's own."""

import json

import pytest
import sentencepiece
import torch
from safetensors.torch import save_file

from delaykit.engine import load_engine, save_engine
from delaykit.errors import CheckpointError
from delaykit.lm.generate import GenerationOptions, LMGenerator

pytest.importorskip("moshi")
from moshi.models.lm import LMGen
from reference_models import reference_lm, reference_mimi
from test_codec_model import tiny_codec_config

MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"


def train_tokenizer(directory) -> str:
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(["the quick brown fox jumps over the lazy dog", "hello there how are you"] * 8))
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(directory / "spm"), vocab_size=32, model_type="unigram",
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, num_threads=1, minloglevel=2)
    return "spm.model"


def fuse_projections(state: dict) -> dict:
    """Rewrite per-step attention projections the way older Kyutai files store them (one fused tensor)."""
    fused, out = {}, {}
    for key, value in state.items():
        for part in ("in_projs", "out_projs"):
            marker = f".self_attn.{part}."
            if marker in key:
                prefix, rest = key.split(marker)
                fused.setdefault((prefix, part), {})[int(rest.split(".")[0])] = value
                break
        else:
            out[key] = value
    for (prefix, part), pieces in fused.items():
        name = "in_proj_weight" if part == "in_projs" else "out_proj.weight"
        out[f"{prefix}.self_attn.{name}"] = torch.cat([pieces[i] for i in sorted(pieces)])
    return out


@pytest.fixture(scope="module")
def kyutai_checkpoint(tmp_path_factory):
    """A tiny moshi-type checkpoint written the way Kyutai ships them: bf16 LM, fused projections."""
    directory = tmp_path_factory.mktemp("kyutai")
    lm, kwargs = reference_lm(seed=3)
    with torch.no_grad():  # the reference then holds exactly what the bf16 file holds
        for parameter in lm.parameters():
            parameter.copy_(parameter.to(torch.bfloat16).float())
    mimi = reference_mimi(seed=4)
    lm_state = {k: v.to(torch.bfloat16) for k, v in fuse_projections(lm.state_dict()).items()}
    save_file({k: v.contiguous() for k, v in lm_state.items()}, str(directory / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(directory / MIMI_NAME))
    config = dict(kwargs, model_type="moshi", mimi_name=MIMI_NAME, tokenizer_name=train_tokenizer(directory),
                  codec_config=tiny_codec_config().to_dict())
    (directory / "config.json").write_text(json.dumps(config))
    return directory, lm, mimi


def greedy_tokens(generator, fed):
    with generator.streaming(fed.shape[0]):
        out = [generator.step(fed[:, :, t]) for t in range(fed.shape[-1])]
    return torch.stack([o.tokens for o in out if o is not None], -1)


def test_kyutai_layout_loads_and_matches_reference(kyutai_checkpoint):
    directory, reference_lm_model, reference_codec = kyutai_checkpoint
    engine = load_engine(directory, device="cpu")
    assert engine.model_type == "moshi" and engine.tokenizer is not None and engine.tokenizer.vocab_size == 32
    audio = torch.randn(1, 1, 4 * 1920, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        codes = engine.codec.encode(audio)
        assert torch.equal(codes, reference_codec.encode(audio))
    user = torch.cat([codes, codes[..., :1].expand(-1, -1, 56)], dim=-1)[:, :5] % 24  # [1, 5, 60], LM card 24
    ours = greedy_tokens(LMGenerator(engine.lm, GenerationOptions.greedy()), user)
    reference = LMGen(reference_lm_model, use_sampling=False)
    with reference.streaming(1):
        theirs = [reference.step(user[:, :, t:t + 1]) for t in range(60)]
    assert torch.equal(ours, torch.stack([t[:, :, 0] for t in theirs if t is not None], -1))


def test_save_then_load_round_trips(kyutai_checkpoint, tmp_path):
    directory, _, _ = kyutai_checkpoint
    engine = load_engine(directory, device="cpu")
    saved = save_engine(tmp_path / "mine", engine.codec, engine.lm, directory / "spm.model", model_type="moshi")
    assert saved.lm_weights.name == "model.safetensors" and saved.codec_weights.name == "codec.safetensors"
    again = load_engine(tmp_path / "mine", device="cpu")
    for before, after in [(engine.lm, again.lm), (engine.codec, again.codec)]:
        before_state, after_state = before.state_dict(), after.state_dict()
        assert before_state.keys() == after_state.keys()
        assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)


def test_codec_only_checkpoint(kyutai_checkpoint, tmp_path):
    _, _, _ = kyutai_checkpoint
    codec = load_engine(kyutai_checkpoint[0], device="cpu").codec
    save_engine(tmp_path / "codec", codec, None)
    engine = load_engine(tmp_path / "codec", device="cpu")
    assert engine.model_type == "codec" and engine.lm is None and engine.tokenizer is None
    assert engine.codec.config == codec.config


def test_bfloat16_engine_steps_on_cpu(kyutai_checkpoint):
    engine = load_engine(kyutai_checkpoint[0], device="cpu", dtype=torch.bfloat16)
    assert engine.lm.text_linear.weight.dtype == torch.bfloat16
    tokens = greedy_tokens(LMGenerator(engine.lm, GenerationOptions.greedy()), torch.zeros(1, 5, 4, dtype=torch.long))
    assert tokens.shape == (1, 6, 3) and (tokens >= 0).all()


def test_weights_that_do_not_fit_the_config_name_the_file(kyutai_checkpoint, tmp_path):
    directory, _, _ = kyutai_checkpoint
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", MIMI_NAME, "spm.model"):
        (broken / name).write_bytes((directory / name).read_bytes())
    config = json.loads((directory / "config.json").read_text())
    config["dim"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_engine(broken, device="cpu")
