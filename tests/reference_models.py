"""Tiny random-weight models built with the reference ``moshi`` package's own constructors (test oracle)."""

from __future__ import annotations

import torch

MOSHIKO_DELAYS = [0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1]  # text, 5 own codebooks, 5 user codebooks (tiny moshiko)


def tiny_lm_kwargs(**overrides) -> dict:
    """A miniature of moshiko's published LM config (same flavours, tiny sizes)."""
    kwargs = dict(
        dim=32, text_card=50, existing_text_padding_id=3, n_q=10, dep_q=5, card=24, num_heads=4,
        num_layers=2, hidden_scale=4.125, causal=True, layer_scale=None, context=12, max_period=10000,
        gating="silu", norm="rms_norm_f32", positional_embedding="rope", depformer_dim=16,
        depformer_dim_feedforward=int(4.125 * 16), depformer_num_heads=2, depformer_num_layers=2,
        depformer_layer_scale=None, depformer_multi_linear=True, depformer_context=5,
        depformer_max_period=10000, depformer_gating="silu", depformer_pos_emb="none",
        depformer_weights_per_step=True, delays=list(MOSHIKO_DELAYS),
    )
    kwargs.update(overrides)
    return kwargs


def randomize(module: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    """Give every parameter a random value, so that no layer is a no-op (layer scales, norms...)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def reference_lm(seed: int = 0, **overrides):
    from moshi.models.loaders import get_moshi_lm

    kwargs = tiny_lm_kwargs(**overrides)
    model = get_moshi_lm(None, lm_kwargs=kwargs, device="cpu", dtype=torch.float32)
    randomize(model, seed)
    return model.eval(), kwargs
