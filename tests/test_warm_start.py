"""Warm starts across layouts: a dialogue model seeded from a TTS model's weights starts where it left off."""

from __future__ import annotations

import pytest
import torch
from test_train_lm import tiny_config, tokenizer, toy_corpus  # noqa: F401  (tokenizer: a fixture)

from delaykit.train.lm import LMTrainer, export_lm


@pytest.fixture(scope="module")
def tts_checkpoint(tokenizer, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("tts")
    codec = root / "codec"
    from test_codec_cli import make_checkpoint

    make_checkpoint(codec)
    LMTrainer(tiny_config("tts", max_steps=40, codec=str(codec)), toy_corpus(), tokenizer, root / "run").fit()
    return export_lm(root / "run", root / "export")


def test_dialogue_from_tts(tts_checkpoint, tokenizer, tmp_path):  # noqa: F811
    import delaykit

    tts = delaykit.load(tts_checkpoint, device="cpu").engine.lm.state_dict()
    corpus = toy_corpus(channels=2)
    warm = LMTrainer(tiny_config("dialogue", warm_start=str(tts_checkpoint)), corpus, tokenizer, tmp_path / "warm")
    cold = LMTrainer(tiny_config("dialogue"), corpus, tokenizer, tmp_path / "cold")
    state = warm.lm.state_dict()
    shared = [name for name in tts if name in state and tts[name].shape == state[name].shape]
    assert "transformer.layers.0.self_attn.in_projs.0.weight" in shared and "depformer_in.0.weight" in shared
    assert all(torch.equal(state[name], tts[name]) for name in shared)
    for k in range(4):  # the user's codebook k starts as the TTS's embedding of codebook k
        assert torch.equal(state[f"emb.{4 + k}.weight"], tts[f"emb.{k}.weight"])
    batch = warm.batcher.next_batch()
    with torch.no_grad():
        warm_loss, cold_loss = warm.losses(batch), cold.losses(batch)
    assert float(warm_loss["audio"]) < 0.8 * float(cold_loss["audio"])  # it already speaks these codes
    assert float(warm_loss["text"]) < float(cold_loss["text"])


def test_warm_start_excludes_init_from(tts_checkpoint, tokenizer, tmp_path):  # noqa: F811
    config = tiny_config("dialogue", warm_start=str(tts_checkpoint), init_from=str(tts_checkpoint))
    with pytest.raises(ValueError, match="exclude each other"):
        LMTrainer(config, toy_corpus(channels=2), tokenizer, tmp_path / "run")


def test_recognizer_gains_codebooks(tokenizer, tmp_path):  # noqa: F811
    """A recognizer that read one codebook, warm-started into one that reads two: the new stream's embedding
    starts at zero, so the warm model first hears exactly what its source heard, then learns from both."""
    codec = tmp_path / "codec"
    from test_codec_cli import make_checkpoint

    make_checkpoint(codec)
    LMTrainer(tiny_config("asr", codebooks=1, codec=str(codec)), toy_corpus(), tokenizer, tmp_path / "one").fit()
    source = export_lm(tmp_path / "one", tmp_path / "one-export")
    one = LMTrainer(tiny_config("asr", codebooks=1, init_from=str(source)), toy_corpus(), tokenizer, tmp_path / "a")
    two = LMTrainer(tiny_config("asr", codebooks=2, warm_start=str(source)), toy_corpus(), tokenizer, tmp_path / "b")
    assert two.lm.config.n_q == 2 and torch.count_nonzero(two.lm.emb[1].weight) == 0
    one_batch, two_batch = one.batcher.next_batch(), two.batcher.next_batch()
    with torch.no_grad():
        one_loss, two_loss = one.losses(one_batch), two.losses(two_batch)
    for name in ("text", "vad"):
        assert float(two_loss[name]) == pytest.approx(float(one_loss[name]), rel=1e-5)
    two.fit()
    assert torch.count_nonzero(two.lm.emb[1].weight) > 0  # it learnt to read the new codebook
