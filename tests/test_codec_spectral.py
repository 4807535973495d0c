"""The codec's spectral decoder: overlap-add that streams exactly like offline (also with paused and reset
items), a decoder that adds no latency, and decoder-only training that leaves the codes untouched."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch
from test_codec_semantic import speechy
from test_train_codec import labelled_tones, tiny_codec, tiny_train_config

from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.codec.spectral import OverlapAdd, SpectralDecoder, SpectralDecoderConfig
from delaykit.train.codec import CodecTrainer, export_codec
from delaykit.train.evaluate import load_codec_checkpoint

FRAME = 1920
SMALL = SpectralDecoderConfig(channels=16, layers=2)


def spectral_codec() -> CodecConfig:
    return dataclasses.replace(tiny_codec(), spectral_decoder=SMALL)


@pytest.fixture(scope="module")
def model() -> CodecModel:
    torch.manual_seed(0)
    return CodecModel(spectral_codec()).eval()


def test_overlap_add_rebuilds_a_signal_from_its_windowed_frames():
    # Hann-windowed analysis frames, synthesis window, normalised overlap-add: the signal comes back exactly
    # (the zero padding before it stands in for the windows that would start earlier).
    hop, window = 240, 960
    signal = torch.randn(1, 40 * hop)
    padded = torch.nn.functional.pad(signal, (window - hop, 0))  # frame t ends where hop t ends
    frames = padded.unfold(-1, window, hop) * torch.hann_window(window)  # [1, 40, window]
    rebuilt = OverlapAdd(window, hop)(frames)  # [1, 40 * hop]: frame t placed at t * hop, so 720 samples late
    overlap = window - hop
    torch.testing.assert_close(rebuilt[:, overlap:], signal[:, :-overlap], atol=1e-5, rtol=0)


def test_decode_streams_like_offline_with_paused_and_reset_items(model):
    check_decode_streams_like_offline(model)


def check_decode_streams_like_offline(model: CodecModel) -> None:
    """Decoding streamed frame by frame, with an item paused, catching up and reset, equals offline decoding."""
    codes = model.encode(speechy(seconds=0.96).repeat(2, 1, 1))  # [2, 4, 12]
    with torch.no_grad():
        offline = model.decode(codes)  # [2, 1, 12 * FRAME]
        with model.streaming(2):
            first = [model.decode(codes[..., t:t + 1]) for t in range(6)]
            model.set_exec_mask(torch.tensor([True, False]))  # item 1 pauses for a frame
            paused = model.decode(codes[..., 6:7])
            model.set_exec_mask(torch.tensor([True, True]))
            rest = [model.decode(torch.cat([codes[:1, :, t:t + 1], codes[1:, :, t - 1:t]])) for t in range(7, 12)]
            model.set_exec_mask(torch.tensor([False, True]))  # item 1 catches up while item 0 pauses
            last = model.decode(codes[..., 11:12])
            model.set_exec_mask(torch.tensor([True, True]))
            model.reset_streaming(torch.tensor([True, False]))
            again = model.decode(codes[..., :1])
    streamed0 = torch.cat(first + [paused] + rest, -1)[0]
    streamed1 = torch.cat(first + rest + [last], -1)[1]
    assert offline.abs().max() > 1e-3  # something to compare
    torch.testing.assert_close(streamed0, offline[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(streamed1, offline[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(again[0], offline[0, :, :FRAME], atol=1e-5, rtol=0)


def test_no_latency_a_frame_changes_nothing_before_it(model):
    check_no_latency(model)


def check_no_latency(model: CodecModel) -> None:
    """Changing the latents from frame 7 on changes no sample before frame 7, and some of frame 7."""
    torch.manual_seed(1)
    latent = torch.randn(1, 16, 12)  # [B, D, frames]
    changed = latent.clone()
    changed[..., 7:] += 1.0
    with torch.no_grad():
        before, after = model.decode_latent(latent), model.decode_latent(changed)  # [1, 1, 12 * FRAME]
    assert torch.equal(before[..., :7 * FRAME], after[..., :7 * FRAME])
    assert (before[..., 7 * FRAME:8 * FRAME] - after[..., 7 * FRAME:8 * FRAME]).abs().max() > 1e-4


def test_config_round_trip_and_shape():
    config = spectral_codec()
    assert CodecConfig.from_dict(config.to_dict()) == config
    decoder = SpectralDecoder(SMALL, 16, 960)
    assert decoder(torch.randn(3, 16, 5)).shape == (3, 1, 5 * 960)
    with pytest.raises(ValueError, match="divide"):
        SpectralDecoder(dataclasses.replace(SMALL, hop=250), 16, 960)


def test_decoder_only_training_keeps_the_codes(tmp_path):
    plain = CodecTrainer(tiny_train_config(max_steps=2), labelled_tones(), tmp_path / "plain", log=io.StringIO())
    plain.fit()
    source = export_codec(tmp_path / "plain", tmp_path / "plain-ckpt")
    config = tiny_train_config(model=spectral_codec(), init_from=str(source), decoder_only=True, max_steps=3)
    trainer = CodecTrainer(config, labelled_tones(), tmp_path / "run", log=io.StringIO())
    encoder_before = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.startswith(
        ("decoder.", "upsample.", "decoder_transformer."))}
    decoder_before = trainer.model.decoder.head.weight.clone()
    trainer.fit()
    after = trainer.model.state_dict()
    for key, value in encoder_before.items():  # encoders, codebooks (and their EMA statistics) untouched
        assert torch.equal(after[key], value), key
    assert not torch.equal(trainer.model.decoder.head.weight, decoder_before)
    loaded = load_codec_checkpoint(export_codec(tmp_path / "run", tmp_path / "ckpt"))
    assert isinstance(loaded.decoder, SpectralDecoder)
    audio = speechy()
    with torch.no_grad():
        assert torch.equal(loaded.encode(audio), plain.model.eval().encode(audio))


def test_decoder_only_trains_from_the_codebooks_asked_for(tmp_path):
    plain = CodecTrainer(tiny_train_config(max_steps=1), labelled_tones(), tmp_path / "plain", log=io.StringIO())
    plain.fit()
    source = export_codec(tmp_path / "plain", tmp_path / "plain-ckpt")
    used = {}
    for codebooks in (None, 2):  # None: q_dropout draws 2..4 codebooks; 2: always the first two
        config = tiny_train_config(model=spectral_codec(), init_from=str(source), decoder_only=True, max_steps=12,
                                   log_every=1, codebooks=codebooks)
        CodecTrainer(config, labelled_tones(), tmp_path / f"run-{codebooks}", log=io.StringIO()).fit()
        rows = [json.loads(line) for line in (tmp_path / f"run-{codebooks}" / "metrics.jsonl").open()]
        used[codebooks] = {row["codebooks"] for row in rows if "codebooks" in row}
    assert used[2] == {2}
    assert len(used[None]) > 1


def test_decoder_only_needs_a_codec_to_start_from(tmp_path):
    with pytest.raises(ValueError, match="init_from"):
        CodecTrainer(tiny_train_config(model=spectral_codec(), decoder_only=True), labelled_tones(), tmp_path,
                     log=io.StringIO())
