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


def tiny_mimi_config() -> dict:
    """A miniature of the published Mimi config: same structure, frame of 1920 samples at 24 kHz."""
    seanet = {"channels": 1, "dimension": 32, "causal": True, "n_filters": 4, "n_residual_layers": 1,
              "activation": "ELU", "compress": 2, "dilation_base": 2, "disable_norm_outer_blocks": 0,
              "kernel_size": 7, "residual_kernel_size": 3, "last_kernel_size": 3, "norm": "none",
              "pad_mode": "constant", "ratios": [8, 6, 5, 4], "true_skip": True}
    return {
        "sample_rate": 24000, "channels": 1, "frame_rate": 12.5, "seanet": seanet,
        "quantizer": {"dimension": 16, "n_q": 8, "bins": 32, "input_dimension": 32, "output_dimension": 32},
        "transformer": {"d_model": 32, "num_heads": 4, "num_layers": 2, "causal": True, "layer_scale": 0.01,
                        "context": 6, "conv_layout": True, "max_period": 10000, "gating": "none",
                        "norm": "layer_norm", "positional_embedding": "rope", "dim_feedforward": 64,
                        "input_dimension": 32, "output_dimensions": [32]},
    }


def reference_mimi(seed: int = 0, num_codebooks: int = 8, config: dict | None = None):
    """A reference Mimi (tiny unless ``config`` says otherwise) with random weights and random codebooks."""
    from moshi.models.loaders import get_mimi

    model = get_mimi(None, config or tiny_mimi_config(), device="cpu", num_codebooks=num_codebooks)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            # Fan-in scaling keeps every stage, and so the decoded audio, of order one.
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            scale = 0.1 if "layer_scale" in name else fan_in ** -0.5
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
        for name, buffer in model.named_buffers():
            if name.endswith("embedding_sum"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator))
            elif name.endswith("cluster_usage"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("_initialized"):
                buffer.fill_(1.0)
    return model.eval()
