"""LoRA: adapters start as a no-op, only they train, merging keeps the outputs and the original keys."""

from __future__ import annotations

import pytest
import torch
from test_train_lm import CARD, tiny_config, tokenizer, toy_corpus  # noqa: F401  (tokenizer: a fixture)

from delaykit.lm.model import LMModel
from delaykit.train.lm import LMTrainer, export_lm, small_lm_config
from delaykit.train.lora import LoRALinear, add_lora, merge_lora


def tiny_lm(mode: str = "tts") -> LMModel:
    torch.manual_seed(0)
    config = small_lm_config(mode, card=CARD, text_card=40, codebooks=4)
    config.dim, config.num_heads, config.num_layers, config.depformer_dim = 32, 2, 2, 16
    config.depformer_num_heads, config.depformer_num_layers, config.depformer_dim_feedforward = 2, 1, 32
    return LMModel(config)


def test_adapters_start_as_a_no_op_and_merge_exactly():
    lm = tiny_lm()
    codes = torch.randint(0, CARD, (2, 5, 12))
    codes[:, 0] = torch.randint(0, 40, (2, 12))
    before = lm(codes).logits
    keys = sorted(lm.state_dict())
    names = add_lora(lm, rank=4)
    assert names and all(isinstance(lm.get_submodule(n), LoRALinear) for n in names)
    assert any(n.startswith("depformer.") for n in names) and any(".gating." in n for n in names)
    assert torch.allclose(lm(codes).logits.nan_to_num(), before.nan_to_num(), atol=1e-5)
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for name in names:
            lm.get_submodule(name).lora_b.normal_(0, 0.1)
    adapted = lm(codes).logits
    assert not torch.allclose(adapted.nan_to_num(), before.nan_to_num())
    merge_lora(lm)
    assert sorted(lm.state_dict()) == keys
    assert torch.allclose(lm(codes).logits.nan_to_num(), adapted.nan_to_num(), atol=1e-5)


def test_lora_fine_tunes_an_exported_model(tokenizer, tmp_path):  # noqa: F811
    from test_codec_cli import make_checkpoint

    make_checkpoint(tmp_path / "codec")
    base_run = LMTrainer(tiny_config("asr", max_steps=5, codec=str(tmp_path / "codec")), toy_corpus(), tokenizer,
                         tmp_path / "base")
    base_run.fit()
    export_lm(tmp_path / "base", tmp_path / "base-export")
    base_weights = {k: v.clone() for k, v in base_run.lm.state_dict().items()}
    tuned = LMTrainer(tiny_config("asr", max_steps=10, init_from=str(tmp_path / "base-export"), lora_rank=4),
                      toy_corpus(seed=1), tokenizer, tmp_path / "lora")
    tuned.fit()
    frozen = [n for n, p in tuned.lm.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(tuned.lm.get_parameter(n), base_weights[n.replace(".base", "")])
                          for n in frozen if n.replace(".base", "") in base_weights)
    export_lm(tmp_path / "lora", tmp_path / "lora-export")
    import delaykit

    merged = delaykit.load(tmp_path / "lora-export", device="cpu").engine.lm
    assert sorted(merged.state_dict()) == sorted(base_weights)
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base_weights[k])]
    assert changed and all(k.startswith("transformer.layers.") for k in changed)


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_fine_tune_a_checkpoint_in_kyutais_layout(lora_rank, tmp_path, monkeypatch):
    """A moshi-type checkpoint written by the reference package's own constructors (as Kyutai's are) trains,
    in full or with LoRA, and exports as a checkpoint that converses with its new weights."""
    import json

    import test_train_lm
    from test_dialogue import CODEBOOKS, build_checkpoint

    import delaykit

    (tmp_path / "kyutai").mkdir()
    source, _, _ = build_checkpoint(tmp_path / "kyutai")
    tokenizer_path = source / json.loads((source / "config.json").read_text())["tokenizer_name"]
    monkeypatch.setattr(test_train_lm, "CODEBOOKS", CODEBOOKS)  # the toy codes in the checkpoint's layout
    trainer = LMTrainer(tiny_config("dialogue", init_from=str(source), lora_rank=lora_rank, max_steps=25,
                                    codec=str(source)), toy_corpus(channels=2), tokenizer_path, tmp_path / "run")
    original = {k: v.clone() for k, v in delaykit.load(source, device="cpu").engine.lm.state_dict().items()}
    # training starts from the checkpoint's weights (under LoRA adapters, as the wrapped layers' base)
    start = {k.replace(".base.", "."): v for k, v in trainer.lm.state_dict().items() if "lora_" not in k}
    assert start.keys() == original.keys() and all(torch.equal(start[k], v) for k, v in original.items())
    fixed = trainer.batcher.next_batch()
    with torch.no_grad():
        before = trainer.losses(fixed)["total"].item()
    trainer.fit()
    with torch.no_grad():
        after = trainer.losses(fixed)["total"].item()
    assert after < 0.9 * before
    export_lm(tmp_path / "run", tmp_path / "export")
    tuned = delaykit.load(tmp_path / "export", device="cpu")
    assert tuned.mode == "dialogue" and sorted(tuned.engine.lm.state_dict()) == sorted(original)
    changed = [k for k, v in tuned.engine.lm.state_dict().items() if not torch.equal(v, original[k])]
    assert changed and (not lora_rank or all(".layers." in k for k in changed))
    with tuned.conversation().stream(1) as session:
        assert session.step(torch.zeros(1, 1920)).agent_pcm.shape == (1, 1920)
