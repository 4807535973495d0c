"""The codec's semantic encoder: log-mel features that ignore level, streaming equal to offline, codes from
its own latent, loading onto a codec trained without one."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from test_train_codec import labelled_tones, tiny_codec, tiny_train_config

from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.codec.semantic import SemanticConfig, SemanticEncoder
from delaykit.train.codec import CodecTrainer, export_codec

SR = 24_000


def semantic_codec() -> CodecConfig:
    return dataclasses.replace(tiny_codec(), semantic=SemanticConfig(n_mels=16, channels=8))


@pytest.fixture(scope="module")
def model() -> CodecModel:
    torch.manual_seed(0)
    return CodecModel(semantic_codec()).eval()


def speechy(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Noise through a moving resonance: something with a spectrum that changes. [1, 1, T]"""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    carrier = np.sin(2 * np.pi * (300 + 200 * np.sin(2 * np.pi * 3 * t)) * t)
    signal = 0.2 * carrier + 0.02 * rng.standard_normal(t.shape)
    return torch.from_numpy(signal.astype(np.float32))[None, None]


def test_features_ignore_the_level_but_report_it():
    # A floor far below the signal: apart from it, a level change only moves the level channel.
    encoder = SemanticEncoder(SemanticConfig(n_mels=16, channels=8, floor=1e-14), SR, 16)
    audio = speechy()
    loud, quiet = encoder.features(audio), encoder.features(audio * 0.25)  # [1, 17, 100] each
    assert loud.shape == (1, 17, SR // 240)
    steps = slice(2, None)  # past the zero padding of the first window
    torch.testing.assert_close(loud[:, :16, steps], quiet[:, :16, steps], atol=1e-3, rtol=0)
    level_change = (loud[:, 16, steps] - quiet[:, 16, steps]) * 10  # natural-log power ratio
    torch.testing.assert_close(level_change, torch.full_like(level_change, 2 * np.log(4.0)), atol=1e-3, rtol=0)


def test_fourier_basis_is_a_fixed_buffer(model):
    fixed = ["semantic_encoder.stft.conv.conv.weight", "semantic_encoder.mel"]
    state = model.state_dict()
    assert not any(key in state for key in fixed), "computed at construction, never saved"
    assert not any(name.startswith("semantic_encoder.stft") for name, _ in model.named_parameters())
    # A checkpoint written when they were saved (some in fp16) still loads, and the computed ones stay.
    buffers = dict(model.named_buffers())
    computed = {key: buffers[key].clone() for key in fixed}
    old_state = {**state, **{key: (value + 1).half() for key, value in computed.items()}}
    model.load_state_dict(old_state, strict=True)
    assert all(torch.equal(buffers[key], computed[key]) for key in fixed)
    spectrum = model.semantic_encoder.stft(torch.ones(1, 1, 960))[0, :, -1]  # [2 * bins]: a constant's
    # Hann window: all of a constant in bin 0, and its main lobe's -1/2 in bin 1 (real parts come first).
    assert float(spectrum[0]) == pytest.approx(1.0, abs=1e-5) and float(spectrum[1]) == pytest.approx(-0.5, abs=1e-5)
    assert float(spectrum[2:].abs().max()) < 1e-5


def test_semantic_codes_come_from_the_semantic_latent(model):
    audio = speechy()
    latent, semantic = model.encode_latents(audio)
    assert semantic is not None and semantic.shape == latent.shape
    codes = model.encode(audio)  # [1, 4, frames]
    assert torch.equal(codes[:, :1], model.quantizer.rvq_first.encode(semantic, 1))
    assert torch.equal(codes[:, 1:], model.quantizer.rvq_rest.encode(latent, 3))


def test_streaming_equals_offline(model):
    audio = speechy(seconds=0.96)  # 12 frames of 1920
    offline = model.encode(audio)
    with torch.no_grad(), model.streaming(1):
        streamed = torch.cat([model.encode(audio[..., i:i + 1920]) for i in range(0, audio.shape[-1], 1920)], -1)
    assert torch.equal(streamed, offline)


def test_hop_must_match_the_frame():
    with pytest.raises(ValueError, match="hop"):
        CodecModel(dataclasses.replace(tiny_codec(), semantic=SemanticConfig(strides=(2, 2))))


def test_config_round_trip():
    config = semantic_codec()
    assert CodecConfig.from_dict(config.to_dict()) == config


def test_train_from_a_codec_without_semantic_encoder(tmp_path):
    plain = CodecTrainer(tiny_train_config(max_steps=2), labelled_tones(), tmp_path / "plain", log=io.StringIO())
    plain.fit()
    source = export_codec(tmp_path / "plain", tmp_path / "plain-ckpt")
    config = tiny_train_config(model=semantic_codec(), init_from=str(source), phoneme_weight=1.0,
                               phoneme_slots=2, max_steps=3)
    trainer = CodecTrainer(config, labelled_tones(), tmp_path / "run", log=io.StringIO())
    assert not trainer.model.quantizer.rvq_first.codebooks[0].initialized  # starts over on the new latent
    assert torch.equal(trainer.model.decoder.state_dict()["model.0.conv.conv.weight"],
                       plain.model.decoder.state_dict()["model.0.conv.conv.weight"])
    trainer.fit()
    assert trainer.model.quantizer.rvq_first.codebooks[0].initialized
    target = export_codec(tmp_path / "run", tmp_path / "ckpt")
    from delaykit.train.evaluate import load_codec_checkpoint

    loaded = load_codec_checkpoint(target)
    assert loaded.semantic_encoder is not None
    audio = speechy()
    with torch.no_grad():
        assert torch.equal(loaded.encode(audio), trainer.model.eval().encode(audio))


def test_semantic_codes_alone_skip_the_acoustic_encoder(model, monkeypatch):
    audio = speechy(seconds=0.96)
    full = model.encode(audio)  # [1, 4, 12]
    with torch.no_grad(), model.streaming(1):
        monkeypatch.setattr(model.encoder, "forward", lambda x: pytest.fail("the SEANet encoder ran"))
        streamed = torch.cat([model.encode(audio[..., i:i + 1920], 1) for i in range(0, audio.shape[-1], 1920)], -1)
    monkeypatch.undo()
    offline_alone = model.encode(audio[..., :1000], 1)  # a partial frame is padded, as in the full path
    assert torch.equal(streamed, full[:, :1])
    assert torch.equal(offline_alone, model.encode(audio[..., :1000])[:, :1])


def test_frozen_semantic_path_keeps_the_first_codebook(tmp_path):
    source_run = CodecTrainer(tiny_train_config(model=semantic_codec(), max_steps=2), labelled_tones(),
                              tmp_path / "source", log=io.StringIO())
    source_run.fit()
    source = export_codec(tmp_path / "source", tmp_path / "source-ckpt")
    config = tiny_train_config(model=semantic_codec(), init_from=str(source), max_steps=3,
                               frozen=("semantic_encoder", "quantizer.rvq_first"))
    trainer = CodecTrainer(config, labelled_tones(), tmp_path / "run", log=io.StringIO())
    frozen_before = {k: v.clone() for k, v in trainer.model.state_dict().items()
                     if k.startswith(("semantic_encoder.", "quantizer.rvq_first."))}
    acoustic_before = trainer.model.state_dict()["quantizer.rvq_rest.vq.layers.0._codebook.embedding_sum"].clone()
    trainer.fit()
    after = trainer.model.state_dict()
    for key, value in frozen_before.items():  # weights and EMA codebook statistics alike
        assert torch.equal(after[key], value), key
    assert not torch.equal(after["quantizer.rvq_rest.vq.layers.0._codebook.embedding_sum"], acoustic_before)
    audio = speechy()
    with torch.no_grad():
        assert torch.equal(trainer.model.eval().encode(audio, 1), source_run.model.eval().encode(audio, 1))
    with pytest.raises(ValueError, match="no part"):
        CodecTrainer(tiny_train_config(model=semantic_codec(), init_from=str(source), frozen=("nothing",)),
                     labelled_tones(), tmp_path / "bad", log=io.StringIO())
