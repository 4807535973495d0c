"""LoRA: adapters start as a no-op, only they train, merging keeps the outputs and the original keys."""

from __future__ import annotations

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
