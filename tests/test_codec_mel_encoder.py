"""A codec whose acoustic codebooks read a log-mel encoder instead of SEANet: streaming equal to offline, the
hop checked, and training onto it from a SEANet codec keeps the semantic codes while the acoustic side starts
over."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from test_codec_semantic import semantic_codec, speechy
from test_train_codec import labelled_tones, tiny_train_config

from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.codec.semantic import SemanticConfig, SemanticEncoder
from delaykit.train.codec import CodecTrainer, export_codec
from delaykit.train.evaluate import load_codec_checkpoint


def mel_codec() -> CodecConfig:
    """The semantic tiny codec with a log-mel acoustic encoder at the SEANet latent's 25 Hz (hop 240 x 2 x 2)."""
    return dataclasses.replace(semantic_codec(), mel_encoder=SemanticConfig(window=960, n_mels=24, channels=12,
                                                                             strides=(2, 2)))


def test_the_acoustic_latent_comes_from_the_mel_encoder_and_streams_like_offline():
    torch.manual_seed(0)
    model = CodecModel(mel_codec()).eval()
    assert isinstance(model.encoder, SemanticEncoder)
    audio = speechy(seconds=0.96)  # 12 frames of 1920
    latent, _ = model.encode_latents(audio)
    assert latent.shape == (1, 16, 12)
    offline = model.encode(audio)  # [1, 4, 12]
    with torch.no_grad(), model.streaming(1):
        streamed = torch.cat([model.encode(audio[..., i:i + 1920]) for i in range(0, audio.shape[-1], 1920)], -1)
    assert torch.equal(streamed, offline)


def test_the_mel_encoder_hop_must_be_the_latent_hop():
    with pytest.raises(ValueError, match="mel encoder's hop"):
        CodecModel(dataclasses.replace(mel_codec(), mel_encoder=SemanticConfig(strides=(2, 2, 2))))


def test_config_round_trip():
    config = mel_codec()
    assert CodecConfig.from_dict(config.to_dict()) == config


def test_training_onto_a_mel_encoder_keeps_the_semantic_codes(tmp_path):
    source_run = CodecTrainer(tiny_train_config(model=semantic_codec(), max_steps=2), labelled_tones(),
                              tmp_path / "source", log=io.StringIO())
    source_run.fit()
    source = export_codec(tmp_path / "source", tmp_path / "source-ckpt")
    config = tiny_train_config(model=mel_codec(), init_from=str(source), max_steps=4, codebooks=4,
                               frozen=("semantic_encoder", "quantizer.rvq_first"))
    trainer = CodecTrainer(config, labelled_tones(), tmp_path / "run", log=io.StringIO())
    # The acoustic codebooks start over on the new latents; the decode path and semantic side are loaded.
    assert not any(codebook.initialized for codebook in trainer.model.quantizer.rvq_rest.codebooks)
    assert trainer.model.quantizer.rvq_first.codebooks[0].initialized
    loaded_keys = [key for key in source_run.model.state_dict()
                   if key.startswith(("decoder.", "semantic_encoder.", "quantizer.rvq_first."))]
    for key in loaded_keys:
        assert torch.equal(trainer.model.state_dict()[key], source_run.model.state_dict()[key]), key
    trainer.fit()
    assert all(codebook.initialized for codebook in trainer.model.quantizer.rvq_rest.codebooks)  # one a step
    exported = load_codec_checkpoint(export_codec(tmp_path / "run", tmp_path / "ckpt"))
    audio = speechy()
    with torch.no_grad():
        codes = exported.encode(audio)  # [1, 4, frames]
        assert torch.equal(codes[:, :1], source_run.model.eval().encode(audio, 1))
        assert torch.equal(codes, trainer.model.eval().encode(audio))
