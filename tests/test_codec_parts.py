"""The codec building blocks match Kyutai's reference implementation (moshi 0.2.13) numerically.

Every test builds the reference module with its own constructor, copies its weights into ours with a strict
``load_state_dict`` and compares offline outputs, streaming outputs and the streaming-state protocol.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

moshi_conv = pytest.importorskip("moshi.modules.conv")
moshi_seanet = pytest.importorskip("moshi.modules.seanet")
moshi_resample = pytest.importorskip("moshi.modules.resample")
moshi_quant = pytest.importorskip("moshi.quantization")

from delaykit.codec import (
    CausalConv1d,
    CausalConvTranspose1d,
    ConvDownsample,
    ConvUpsample,
    QuantizerConfig,
    SeanetConfig,
    SeanetDecoder,
    SeanetEncoder,
    SplitResidualVQ,
)

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed_and_no_grad():
    torch.manual_seed(0)
    with torch.no_grad():
        yield


def _copy(reference: torch.nn.Module, ours: torch.nn.Module) -> torch.nn.Module:
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.eval()


def _stream(module, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    """Feed ``x`` [B, C, T] in chunks of the given lengths (cycled) inside a streaming context."""
    outs, pos = [], 0
    with module.streaming(x.shape[0]):
        for size in itertools.cycle(chunks):
            if pos >= x.shape[-1]:
                break
            outs.append(module(x[..., pos : pos + size]))
            pos += size
    return torch.cat(outs, dim=-1)


def _ref_seanet_kwargs(c: SeanetConfig) -> dict:
    return {
        "channels": c.channels,
        "dimension": c.dimension,
        "n_filters": c.n_filters,
        "n_residual_layers": c.n_residual_layers,
        "ratios": list(c.ratios),
        "kernel_size": c.kernel_size,
        "last_kernel_size": c.last_kernel_size,
        "residual_kernel_size": c.residual_kernel_size,
        "dilation_base": c.dilation_base,
        "compress": c.compress,
        "true_skip": c.true_skip,
        "pad_mode": c.pad_mode,
        "causal": True,
        "norm": "none",
    }


def _ref_quantizer(c: QuantizerConfig):
    return moshi_quant.SplitResidualVectorQuantizer(
        dimension=c.dimension,
        input_dimension=c.input_dimension,
        output_dimension=c.output_dimension,
        n_q=c.n_q,
        n_q_semantic=c.n_q_semantic,
        bins=c.bins,
    )


def _randomize_codebooks(quantizer: torch.nn.Module) -> None:
    for name, buf in quantizer.named_buffers():
        if name.endswith("embedding_sum"):
            buf.copy_(torch.randn_like(buf))
        elif name.endswith("cluster_usage"):
            buf.copy_(torch.rand_like(buf) + 0.5)
        elif name.endswith("_initialized"):
            buf.fill_(1.0)


# ---------------------------------------------------------------- convolutions

CONV_CASES = [
    # kernel, stride, dilation, groups, pad_mode
    (7, 1, 1, 1, "constant"),
    (3, 1, 4, 1, "constant"),
    (1, 1, 1, 1, "constant"),
    (8, 4, 1, 1, "constant"),
    (10, 5, 1, 2, "replicate"),
    (4, 2, 1, 6, "replicate"),
]


@pytest.mark.parametrize("kernel,stride,dilation,groups,pad_mode", CONV_CASES)
def test_conv_matches_reference(kernel, stride, dilation, groups, pad_mode):
    ref = moshi_conv.StreamingConv1d(
        6, 12, kernel, stride, dilation=dilation, groups=groups, causal=True, pad_mode=pad_mode
    ).eval()
    ours = _copy(
        ref, CausalConv1d(6, 12, kernel, stride, dilation=dilation, groups=groups, pad_mode=pad_mode)
    )
    x = torch.randn(3, 6, 24 * stride)
    offline = ours(x)
    assert offline.shape == (3, 12, 24)
    torch.testing.assert_close(offline, ref(x), atol=ATOL, rtol=0)
    for chunks in ([stride], [2 * stride, stride], [5 * stride, 3 * stride, stride]):
        ours_stream = _stream(ours, x, chunks)
        torch.testing.assert_close(ours_stream, offline, atol=ATOL, rtol=0)
        torch.testing.assert_close(ours_stream, _stream(ref, x, chunks), atol=ATOL, rtol=0)


@pytest.mark.parametrize("kernel,stride,groups", [(8, 4, 1), (4, 2, 4), (3, 1, 1), (12, 4, 2), (2, 2, 1)])
def test_convtr_matches_reference(kernel, stride, groups):
    ref = moshi_conv.StreamingConvTranspose1d(8, 4, kernel, stride, groups=groups, causal=True).eval()
    ours = _copy(ref, CausalConvTranspose1d(8, 4, kernel, stride, groups=groups))
    x = torch.randn(2, 8, 17)
    offline = ours(x)
    assert offline.shape == (2, 4, 17 * stride)
    torch.testing.assert_close(offline, ref(x), atol=ATOL, rtol=0)
    for chunks in ([1], [2, 1], [5, 3]):
        ours_stream = _stream(ours, x, chunks)
        torch.testing.assert_close(ours_stream, offline, atol=ATOL, rtol=0)
        torch.testing.assert_close(ours_stream, _stream(ref, x, chunks), atol=ATOL, rtol=0)


def test_conv_rejects_partial_stride_chunk():
    conv = CausalConv1d(2, 2, 4, stride=2)
    with conv.streaming(1), pytest.raises(ValueError):
        conv(torch.randn(1, 2, 3))


# ---------------------------------------------------------------- SEANet

SEANET_CONFIGS = [
    SeanetConfig.tiny(),
    SeanetConfig(n_filters=4, dimension=12, ratios=(3, 2), n_residual_layers=2, true_skip=False, compress=4),
    SeanetConfig(
        n_filters=2, dimension=8, ratios=(2, 2), pad_mode="replicate", kernel_size=5, last_kernel_size=7
    ),
]


@pytest.mark.parametrize("config", SEANET_CONFIGS)
def test_seanet_matches_reference(config: SeanetConfig):
    ref_enc = moshi_seanet.SEANetEncoder(**_ref_seanet_kwargs(config)).eval()
    ref_dec = moshi_seanet.SEANetDecoder(**_ref_seanet_kwargs(config)).eval()
    enc = _copy(ref_enc, SeanetEncoder(config))
    dec = _copy(ref_dec, SeanetDecoder(config))
    hop = config.hop_length
    frames = 12
    audio = torch.randn(2, config.channels, frames * hop)
    latent = enc(audio)
    assert latent.shape == (2, config.dimension, frames)
    torch.testing.assert_close(latent, ref_enc(audio), atol=ATOL, rtol=0)
    recon = dec(latent)
    assert recon.shape == audio.shape
    torch.testing.assert_close(recon, ref_dec(latent), atol=ATOL, rtol=0)
    for chunks in ([1], [3, 1, 2]):
        enc_stream = _stream(enc, audio, [c * hop for c in chunks])
        dec_stream = _stream(dec, latent, chunks)
        torch.testing.assert_close(enc_stream, latent, atol=ATOL, rtol=0)
        torch.testing.assert_close(dec_stream, recon, atol=ATOL, rtol=0)
        # The reference's replicate mode refuses chunks shorter than its left context.
        if config.pad_mode == "constant":
            ref_enc_stream = _stream(ref_enc, audio, [c * hop for c in chunks])
            torch.testing.assert_close(enc_stream, ref_enc_stream, atol=ATOL, rtol=0)
            torch.testing.assert_close(dec_stream, _stream(ref_dec, latent, chunks), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- resampling


def test_resample_matches_reference():
    dim = 6
    ref_down = moshi_resample.ConvDownsample1d(2, dimension=dim, causal=True, learnt=True).eval()
    ref_up = moshi_resample.ConvTrUpsample1d(
        2, dimension=dim, causal=True, learnt=True, channel_wise=True
    ).eval()
    down = _copy(ref_down, ConvDownsample(dim))
    up = _copy(ref_up, ConvUpsample(dim))
    x = torch.randn(3, dim, 20) + 2.0  # an offset makes replicate padding differ from zero padding
    low = down(x)
    assert low.shape == (3, dim, 10)
    torch.testing.assert_close(low, ref_down(x), atol=ATOL, rtol=0)
    high = up(low)
    assert high.shape == (3, dim, 20)
    torch.testing.assert_close(high, ref_up(low), atol=ATOL, rtol=0)
    for chunks in ([2], [4, 2]):
        torch.testing.assert_close(_stream(down, x, chunks), low, atol=ATOL, rtol=0)
        torch.testing.assert_close(
            _stream(down, x, chunks), _stream(ref_down.conv, x, chunks), atol=ATOL, rtol=0
        )
        torch.testing.assert_close(_stream(up, low, [c // 2 for c in chunks]), high, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- quantizer


@pytest.mark.parametrize("bins,frames", [(16, 5), (64, 40)])  # both of torch.cdist's code paths
def test_quantizer_matches_reference(bins: int, frames: int):
    config = QuantizerConfig(dimension=8, input_dimension=16, output_dimension=12, n_q=5, bins=bins)
    ref = _ref_quantizer(config).eval()
    _randomize_codebooks(ref)
    ours = _copy(ref, SplitResidualVQ(config))
    x = torch.randn(3, 16, frames)
    for n_q in (1, 2, 5):
        ref.set_num_codebooks(n_q)
        ours.n_q = n_q
        codes = ours.encode(x)
        assert codes.shape == (3, n_q, frames)
        assert torch.equal(codes, ref.encode(x))
        torch.testing.assert_close(ours.decode(codes), ref.decode(codes), atol=ATOL, rtol=0)
        result = ours(x)
        assert torch.equal(result.codes, codes)
        torch.testing.assert_close(result.quantized, ref(x, 12.5).x, atol=ATOL, rtol=0)
    assert torch.equal(ours.encode(x, n_q=3), ours.encode(x)[:, :3])


def test_quantizer_ties_match_reference():
    """Inputs sitting exactly on (duplicated) centroids pick the same index as torch.cdist + argmin."""
    config = QuantizerConfig(dimension=4, input_dimension=4, output_dimension=4, n_q=2, bins=32)
    ref = _ref_quantizer(config).eval()
    _randomize_codebooks(ref)
    codebook = ref.rvq_first.vq.layers[0]._codebook
    codebook.cluster_usage.fill_(1.0)
    codebook.embedding_sum[16:] = codebook.embedding_sum[:16]  # every centroid twice
    ref.rvq_first.input_proj.weight.copy_(torch.eye(4)[:, :, None])
    ours = _copy(ref, SplitResidualVQ(config))
    x = codebook.embedding_sum[torch.randint(0, 32, (30,))].T[None]  # [1, 4, 30]
    assert torch.equal(ours.encode(x, 1), ref.rvq_first.encode(x))


def test_quantizer_training_step():
    config = replace(QuantizerConfig.tiny(), q_dropout=True, kmeans_iters=5, check_unused_every=1)
    quantizer = SplitResidualVQ(config).train()
    x = torch.randn(4, config.input_dimension, 10, requires_grad=True)
    with torch.enable_grad():
        first = quantizer(x)
        (first.quantized.sum() + first.commitment_loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert first.commitment_loss > 0
    assert quantizer.rvq_first.codebooks[0].initialized  # k-means ran on the first batch
    assert not quantizer.rvq_rest.codebooks[1].initialized  # only one k-means per RVQ per batch
    for _ in range(6):
        out = quantizer(x.detach())
        assert 2 <= out.codes.shape[1] <= config.n_q
    assert all(cb.initialized for cb in quantizer.rvq_rest.codebooks)
    quantizer.eval()
    assert quantizer(x.detach()).codes.shape[1] == config.n_q


# ---------------------------------------------------------------- streaming protocol


def _stream_protocol_model() -> tuple[SeanetEncoder, torch.Tensor]:
    config = SeanetConfig(n_filters=2, dimension=8, ratios=(2, 2), pad_mode="replicate")
    enc = SeanetEncoder(config).eval()
    return enc, torch.randn(3, 1, 10 * config.hop_length) + 1.0


def _conv_states(module) -> list[torch.Tensor]:
    states = []
    for m in module.streaming_modules():
        for name in ("previous", "first", "partial"):
            if hasattr(m.state, name):
                states.append(getattr(m.state, name).clone())
    return states


def test_exec_mask_freezes_masked_items():
    enc, audio = _stream_protocol_model()
    dec = SeanetDecoder(enc.config).eval()
    hop = enc.hop_length

    def set_mask(*values: bool) -> None:
        enc.set_exec_mask(torch.tensor(values))
        dec.set_exec_mask(torch.tensor(values))

    with enc.streaming(3), dec.streaming(3):
        dec(enc(audio[..., : 2 * hop]))
        before = _conv_states(enc) + _conv_states(dec)
        set_mask(True, False, True)
        dec(enc(audio[..., 2 * hop : 4 * hop]))
        after = _conv_states(enc) + _conv_states(dec)
        for b, a in zip(before, after):
            assert torch.equal(b[1], a[1])
        assert any(not torch.equal(b[0], a[0]) for b, a in zip(before, after))
        # Item 1 resumes where it stopped: it now gets the chunk it skipped.
        set_mask(False, True, False)
        latent = enc(audio[1:2, :, 2 * hop : 4 * hop].expand(3, -1, -1).contiguous())
        recon = dec(latent)
    full_latent = enc(audio)
    full_recon = dec(full_latent)
    torch.testing.assert_close(latent[1], full_latent[1, :, 2:4], atol=ATOL, rtol=0)
    torch.testing.assert_close(recon[1], full_recon[1, :, 2 * hop : 4 * hop], atol=ATOL, rtol=0)


def test_reset_rewinds_chosen_items():
    enc, audio = _stream_protocol_model()
    dec = SeanetDecoder(enc.config).eval()
    hop = enc.hop_length
    fresh_audio = torch.randn(3, 1, 4 * hop) - 1.0
    with enc.streaming(3), dec.streaming(3):
        dec(enc(audio[..., : 3 * hop]))
        reset = torch.tensor([False, True, False])
        enc.reset_streaming(reset)
        dec.reset_streaming(reset)
        latent = enc(fresh_audio)
        recon = dec(latent)
    torch.testing.assert_close(latent[1], enc(fresh_audio)[1], atol=ATOL, rtol=0)
    torch.testing.assert_close(recon[1], dec(enc(fresh_audio))[1], atol=ATOL, rtol=0)
    # Items that were not reset continue their streams.
    torch.testing.assert_close(latent[0], enc(torch.cat([audio[..., : 3 * hop], fresh_audio], -1))[0, :, 3:])


# ---------------------------------------------------------------- published sizes


def test_full_size_keys_and_shapes_match_reference():
    seanet = SeanetConfig.mimi()
    quant = QuantizerConfig.mimi()
    with torch.device("meta"):
        pairs = [
            (moshi_seanet.SEANetEncoder(**_ref_seanet_kwargs(seanet)), SeanetEncoder(seanet)),
            (moshi_seanet.SEANetDecoder(**_ref_seanet_kwargs(seanet)), SeanetDecoder(seanet)),
            (
                moshi_resample.ConvDownsample1d(2, dimension=512, causal=True, learnt=True),
                ConvDownsample(512),
            ),
            (
                moshi_resample.ConvTrUpsample1d(
                    2, dimension=512, causal=True, learnt=True, channel_wise=True
                ),
                ConvUpsample(512),
            ),
            (_ref_quantizer(quant), SplitResidualVQ(quant)),
        ]
    for ref, ours in pairs:
        ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert our_shapes == ref_shapes
    assert SeanetConfig.mimi().hop_length == 960


@pytest.mark.parametrize("max_rows", [0, 10**9])
def test_matmul_and_torch_conv_paths_match_reference(monkeypatch, max_rows: int):
    """Short calls run convs as matmuls, long ones through torch; force each path everywhere."""
    import delaykit.codec.conv as conv_module

    monkeypatch.setattr(conv_module, "MATMUL_MAX_ROWS", max_rows)
    config = SEANET_CONFIGS[1]
    ref_enc = moshi_seanet.SEANetEncoder(**_ref_seanet_kwargs(config)).eval()
    ref_dec = moshi_seanet.SEANetDecoder(**_ref_seanet_kwargs(config)).eval()
    enc = _copy(ref_enc, SeanetEncoder(config))
    dec = _copy(ref_dec, SeanetDecoder(config))
    audio = torch.randn(2, 1, 9 * config.hop_length)
    latent = enc(audio)
    torch.testing.assert_close(latent, ref_enc(audio), atol=ATOL, rtol=0)
    torch.testing.assert_close(dec(latent), ref_dec(latent), atol=ATOL, rtol=0)
    torch.testing.assert_close(_stream(dec, latent, [2, 1]), ref_dec(latent), atol=ATOL, rtol=0)
