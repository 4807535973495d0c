"""The shared streaming transformer equals the reference, offline and streaming, and across a ring wrap."""

import pytest
import torch

from delaykit.transformer import StreamingTransformer, TransformerConfig

reference = pytest.importorskip("moshi.modules.transformer")

FLAVOURS = {
    # name: (our config, reference kwargs)
    "codec": dict(norm="layer_norm", gating="none", layer_scale=0.01, dim_feedforward=64, context=6),
    "temporal": dict(norm="rms_norm_f32", gating="silu", layer_scale=None, dim_feedforward=int(4.125 * 32),
                     context=5, kv_repeat=2),
    "depth": dict(norm="rms_norm_f32", gating="silu", layer_scale=None, dim_feedforward=[40, 48, 56],
                  context=None, weights_per_step=3, weights_per_step_schedule=[0, 1, 2, 2][:3],
                  positional_embedding="none"),
}


def build_pair(flavour: str, seed: int = 0):
    options = dict(FLAVOURS[flavour])
    options.setdefault("positional_embedding", "rope")
    torch.manual_seed(seed)
    theirs = reference.StreamingTransformer(d_model=32, num_heads=4, num_layers=2, causal=True,
                                            max_period=10_000, **options).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.normal_(0, 0.3)
    ours = StreamingTransformer(TransformerConfig(d_model=32, num_heads=4, num_layers=2, **options)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_offline_matches_reference(flavour):
    ours, theirs = build_pair(flavour)
    T = 3 if flavour == "depth" else 12
    x = torch.randn(2, T, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("flavour", ["codec", "temporal"])
def test_streaming_equals_offline_across_wrap(flavour):
    ours, theirs = build_pair(flavour)
    x = torch.randn(2, 17, 32)  # longer than the context, so the ring wraps
    with torch.no_grad():
        offline = ours(x)
        with ours.streaming(2):
            streamed = torch.cat([ours(x[:, t:t + 1]) for t in range(17)], dim=1)
        with theirs.streaming(2):
            reference_streamed = torch.cat([theirs(x[:, t:t + 1]) for t in range(17)], dim=1)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(streamed, reference_streamed, atol=1e-5, rtol=1e-5)


def test_depth_streaming_equals_offline():
    ours, _ = build_pair("depth")
    x = torch.randn(2, 3, 32)
    with torch.no_grad():
        offline = ours(x)
        with ours.streaming(2):
            streamed = torch.cat([ours(x[:, t:t + 1]) for t in range(3)], dim=1)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-5)


def test_chunked_streaming_keeps_context_exact():
    """Two steps per call (the codec's 25 Hz inside an 80 ms frame) still equal offline after a wrap."""
    ours, _ = build_pair("codec")
    ours.config.max_chunk = 2
    for layer in ours.layers:
        layer.self_attn.max_chunk = 2
    x = torch.randn(1, 16, 32)
    with torch.no_grad():
        offline = ours(x)
        with ours.streaming(1):
            streamed = torch.cat([ours(x[:, t:t + 2]) for t in range(0, 16, 2)], dim=1)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-5)


def test_masked_item_keeps_state_and_reset_restarts():
    ours, _ = build_pair("temporal")
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        alone = ours(x[1:])
        with ours.streaming(2):
            outputs = []
            for t in range(8):
                ours.set_exec_mask(torch.tensor([True, True]))
                outputs.append(ours(x[:, t:t + 1]))
                if t == 3:  # item 1 pauses for a step fed with junk, then goes on
                    ours.set_exec_mask(torch.tensor([True, False]))
                    ours(torch.randn(2, 1, 32))
            streamed_item1 = torch.cat(outputs, dim=1)[1:]
            torch.testing.assert_close(streamed_item1, alone, atol=1e-5, rtol=1e-5)
            ours.set_exec_mask(torch.tensor([True, True]))
            ours.reset_streaming(torch.tensor([False, True]))
            restarted = torch.cat([ours(x[:, t:t + 1]) for t in range(8)], dim=1)[1:]
    torch.testing.assert_close(restarted, alone, atol=1e-5, rtol=1e-5)
