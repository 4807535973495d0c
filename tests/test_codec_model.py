"""The assembled codec equals the reference Mimi, offline and streaming, and its published keys match."""

import pytest
import torch

from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.codec.quantizer import QuantizerConfig
from delaykit.codec.seanet import SeanetConfig
from delaykit.transformer import TransformerConfig

pytest.importorskip("moshi")
from reference_models import reference_mimi

FRAME = 1920


def tiny_codec_config() -> CodecConfig:
    return CodecConfig(
        seanet=SeanetConfig(dimension=32, n_filters=4),
        quantizer=QuantizerConfig(dimension=16, input_dimension=32, output_dimension=32, n_q=8, bins=32),
        transformer=TransformerConfig(d_model=32, num_heads=4, num_layers=2, dim_feedforward=64, context=6,
                                      layer_scale=0.01, max_chunk=8),
        num_codebooks=8)


@pytest.fixture(scope="module")
def pair():
    theirs = reference_mimi()
    ours = CodecModel(tiny_codec_config()).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.fixture(scope="module")
def audio():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 12 * FRAME, generator=generator) * 0.3  # 12 frames: past the context of 6 steps


def test_offline_encode_decode_match_reference(pair, audio):
    ours, theirs = pair
    with torch.no_grad():
        codes = ours.encode(audio)
        assert torch.equal(codes, theirs.encode(audio))
        torch.testing.assert_close(ours.decode(codes), theirs.decode(codes), atol=1e-5, rtol=1e-5)


def test_streaming_encode_equals_offline_across_wrap(pair, audio):
    ours, _ = pair
    with torch.no_grad():
        offline = ours.encode(audio)
        for frames_per_call in (1, 3):
            with ours.streaming(2):
                chunks = [ours.encode(audio[..., s:s + frames_per_call * FRAME])
                          for s in range(0, audio.shape[-1], frames_per_call * FRAME)]
            assert torch.equal(torch.cat(chunks, dim=-1), offline)


def test_streaming_decode_equals_offline_and_reference(pair, audio):
    ours, theirs = pair
    with torch.no_grad():
        codes = ours.encode(audio)
        offline = ours.decode(codes)
        with ours.streaming(2):
            streamed = torch.cat([ours.decode(codes[..., t:t + 1]) for t in range(codes.shape[-1])], dim=-1)
        with theirs.streaming(2):
            reference = torch.cat([theirs.decode(codes[..., t:t + 1]) for t in range(codes.shape[-1])], dim=-1)
    assert streamed.shape[-1] == codes.shape[-1] * FRAME
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-5)
    # The reference's ring cache holds exactly the context, so its chunked steps drift after a wrap;
    # up to the wrap both agree.
    first = 3 * FRAME
    torch.testing.assert_close(streamed[..., :first], reference[..., :first], atol=1e-5, rtol=1e-5)


def test_streaming_items_are_independent(pair, audio):
    """A paused item keeps its state; a reset item starts afresh."""
    ours, _ = pair
    with torch.no_grad():
        alone = ours.encode(audio[1:])
        with ours.streaming(2):
            chunks = []
            for t in range(12):
                ours.set_exec_mask(torch.tensor([True, True]))
                chunks.append(ours.encode(audio[..., t * FRAME:(t + 1) * FRAME])[1:])
                if t == 4:
                    ours.set_exec_mask(torch.tensor([True, False]))
                    ours.encode(torch.randn(2, 1, FRAME))
            assert torch.equal(torch.cat(chunks, -1), alone)
            ours.set_exec_mask(torch.tensor([True, True]))
            ours.reset_streaming(torch.tensor([False, True]))
            again = torch.cat([ours.encode(audio[..., t * FRAME:(t + 1) * FRAME])[1:] for t in range(12)], -1)
        assert torch.equal(again, alone)


def test_streaming_rejects_partial_frames(pair):
    ours, _ = pair
    with ours.streaming(1), pytest.raises(ValueError, match="whole frames"):
        ours.encode(torch.zeros(1, 1, 1000))


def test_published_mimi_keys_and_shapes():
    from moshi.models import loaders

    with torch.device("meta"):
        reference = loaders.get_mimi(None, device="meta")
        ours = CodecModel(CodecConfig.mimi())
    theirs_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert len(theirs_shapes) == 318
    assert ours_shapes == theirs_shapes


def test_config_round_trips_through_dict():
    config = tiny_codec_config()
    assert CodecConfig.from_dict(config.to_dict()) == config
