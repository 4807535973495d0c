"""The codec's harmonic-plus-noise decoder: its speech has the pitch it is given, it streams exactly like
offline (also with paused and reset items) and adds no latency, and training teaches it F0 and voicing."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from test_codec_spectral import check_decode_streams_like_offline, check_no_latency, spectral_codec
from test_train_codec import tiny_codec, tiny_train_config

from delaykit.checkpoints import load_safetensors
from delaykit.codec.harmonic import (
    HarmonicDecoder,
    HarmonicDecoderConfig,
    HarmonicFrames,
    pulse_frames,
)
from delaykit.codec.model import CodecConfig, CodecModel
from delaykit.data.crops import AudioCorpus, CropConfig
from delaykit.pitch import f0_track
from delaykit.train.codec import CodecTrainer, export_codec, pitch_targets
from delaykit.train.evaluate import load_codec_checkpoint

FRAME = 1920
RATE = 24_000
SMALL = HarmonicDecoderConfig(channels=16, layers=2)


def harmonic_codec() -> CodecConfig:
    return dataclasses.replace(tiny_codec(), harmonic_decoder=SMALL)


@pytest.fixture(scope="module")
def model() -> CodecModel:
    torch.manual_seed(0)
    codec = CodecModel(harmonic_codec()).eval()
    with torch.no_grad():  # make the untrained decoder audible and voiced: a loud harmonic part, little noise
        codec.decoder.harmonic_head.bias.fill_(-1.0)
        codec.decoder.f0_head.bias[1] = 4.0
    return codec


def test_pulse_frames_are_band_limited_pulse_trains():
    omega = torch.full((1, 1), 2 * math.pi * 150 / RATE, dtype=torch.float64)  # [1, 1]
    phase = torch.full((1, 1), 0.3, dtype=torch.float64)
    pulses = pulse_frames(phase, omega, 960, 0.95)[0, 0]  # [960]
    n = torch.arange(960, dtype=torch.float64) - 480
    harmonics = int(0.95 * 12_000 // 150)
    summed = sum(torch.cos(k * (0.3 + omega[0, 0] * n)) for k in range(1, harmonics + 1))
    torch.testing.assert_close(pulses, summed, atol=1e-6, rtol=0)


def test_decoded_speech_has_the_pitch_it_is_given(model):
    latent = torch.randn(1, 16, 25)  # [B, D, 25 Hz latents]: 1 s
    decoder: HarmonicDecoder = model.decoder
    with torch.no_grad():
        frames = decoder.frames(latent)
        for f0 in (100.0, 180.0):
            target = torch.full_like(frames.f0_hz, f0)  # [1, steps]
            audio = decoder.render(frames, target)[0, 0]  # [T]
            track = f0_track(audio, RATE)
            voiced = track[torch.isfinite(track)]
            assert voiced.numel() > 0.8 * track.numel()
            assert abs(voiced.median().item() - f0) < 0.03 * f0


def test_unvoiced_frames_have_no_pitch(model):
    latent = torch.randn(1, 16, 25)
    decoder: HarmonicDecoder = model.decoder
    with torch.no_grad():
        frames = decoder.frames(latent)
        silent_source = HarmonicFrames(frames.f0_hz, torch.full_like(frames.voicing_logit, -30.0),
                                       frames.harmonic_log, frames.noise_log + 3.0)
        track = f0_track(decoder.render(silent_source)[0, 0], RATE)
    assert torch.isfinite(track).float().mean() < 0.1


def test_decode_streams_like_offline_with_paused_and_reset_items(model):
    check_decode_streams_like_offline(model)  # the oscillator's phase and noise position are streaming state


def test_no_latency_a_frame_changes_nothing_before_it(model):
    check_no_latency(model)


def test_config_round_trip_and_one_decoder_only():
    config = harmonic_codec()
    assert CodecConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="one decoder"):
        CodecModel(dataclasses.replace(config, spectral_decoder=SMALL))


def buzz_signals() -> list[np.ndarray]:
    """Voice-like buzzes at three pitches, with a silent gap in each: what F0 and voicing targets come from."""
    t = np.arange(RATE) / RATE  # [T]
    signals = []
    for f0 in (100.0, 150.0, 220.0):
        buzz = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
        signals.append((0.2 * np.where((t > 0.4) & (t < 0.6), 0.0, buzz)).astype(np.float32))
    return signals


def buzzes() -> AudioCorpus:
    return AudioCorpus.from_arrays(buzz_signals())


def test_pitch_targets_follow_yin_and_mark_the_unmeasurable_steps():
    audio = torch.from_numpy(buzz_signals()[1][None, None, :9600])  # [1, 1, 0.4 s]: 150 Hz throughout
    target, known = pitch_targets(audio, 40, RATE, hop=240, window=960)  # [1, 40], [40]
    assert known.tolist() == [True] * 37 + [False] * 3  # 40 ms frames from each 10 ms step: the last 3 run out
    assert torch.isnan(target[0, 37:]).all()
    torch.testing.assert_close(target[0, :37], torch.full((37,), 150.0), rtol=0.02, atol=0)


def test_starts_from_a_spectral_codec_then_learns_pitch_keeping_the_codes(tmp_path):
    plain = CodecTrainer(tiny_train_config(model=spectral_codec(), max_steps=2), buzzes(), tmp_path / "plain",
                         log=io.StringIO())
    plain.fit()
    source = export_codec(tmp_path / "plain", tmp_path / "plain-ckpt")
    spectral = load_codec_checkpoint(source)
    config = tiny_train_config(model=harmonic_codec(), init_from=str(source), decoder_only=True, max_steps=40,
                               crops=CropConfig(batch_size=3, min_frames=4, max_frames=6))
    trainer = CodecTrainer(config, buzzes(), tmp_path / "run", log=io.StringIO())
    decoder: HarmonicDecoder = trainer.model.decoder
    # the trunk is the spectral decoder's, both envelopes start from its log magnitudes
    torch.testing.assert_close(decoder.blocks.state_dict(), spectral.decoder.blocks.state_dict())
    bins = SMALL.bins
    torch.testing.assert_close(decoder.noise_head.weight, spectral.decoder.head.weight[:bins])
    torch.testing.assert_close(decoder.harmonic_head.bias, spectral.decoder.head.bias[:bins] - decoder.pulse_gain)
    audio = torch.from_numpy(np.stack(buzz_signals()))[:, None]  # [3, 1, T]: 100, 150, 220 Hz, silent 0.4-0.6 s

    def predicted() -> HarmonicFrames:
        model = trainer.model.eval()
        with torch.no_grad():
            return decoder.frames(model.decoder_input(model.quantizer.decode(model.encode(audio))))

    assert torch.allclose(predicted().f0_hz, torch.tensor(SMALL.f0_start))
    trainer.fit()
    frames = predicted()  # [3, 100]
    # The tiny codec's codes barely tell the three pitches apart, so the F0 head learns their median (150 Hz).
    assert frames.f0_hz[:, :35].median().item() == pytest.approx(150.0, rel=0.15)
    loaded = load_codec_checkpoint(export_codec(tmp_path / "run", tmp_path / "ckpt", fp16_decoder=True))
    assert isinstance(loaded.decoder, HarmonicDecoder)
    stored = load_safetensors(tmp_path / "ckpt" / "codec.safetensors")
    assert stored["decoder.harmonic_head.weight"].dtype == torch.float16
    assert stored["encoder.model.0.conv.conv.weight"].dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(loaded.encode(audio), spectral.encode(audio))  # same codes as where it started


def test_voicing_head_learns_the_share_of_voiced_steps(tmp_path):
    # With only the pitch losses (no spectral pull on the gate), voicing moves from 0.5 (a zero-initialised head
    # that only the voicing loss reaches) towards the voiced share of the training crops (about 0.65: crops fall
    # on the buzzes' central silent gaps more often than on their ends).
    config = tiny_train_config(model=harmonic_codec(), max_steps=30, l1_weight=0.0, stft_weight=0.0, mel_weight=0.0,
                               crops=CropConfig(batch_size=3, min_frames=4, max_frames=6))
    trainer = CodecTrainer(config, buzzes(), tmp_path / "run", log=io.StringIO())
    trainer.fit()
    model = trainer.model.eval()
    audio = torch.from_numpy(np.stack(buzz_signals()))[:, None]  # [3, 1, T]
    with torch.no_grad():
        frames = model.decoder.frames(model.decoder_input(model.quantizer.decode(model.encode(audio))))
    assert torch.sigmoid(frames.voicing_logit).mean() > 0.58


class PassThrough(torch.nn.Module):
    """A stand-in codec whose codes are the audio itself, optionally swapped for noise of the same level."""

    sample_rate = RATE
    num_codebooks = 1

    def __init__(self, whisper: bool) -> None:
        super().__init__()
        self.whisper = whisper

    def encode(self, audio: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        return audio  # [B, 1, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if not self.whisper:
            return codes
        noise = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
        return noise * codes.std()


def test_codec_eval_reports_voicing_and_f0_error(tmp_path):
    from delaykit.audio import write_audio
    from delaykit.train.evaluate import evaluate_codec

    (tmp_path / "wavs").mkdir()
    rows = []
    for index, signal in enumerate(buzz_signals()):
        write_audio(tmp_path / "wavs" / f"{index}.wav", signal, RATE)
        rows.append(json.dumps({"path": f"wavs/{index}.wav", "text": "", "duration": 1.0}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    kept = evaluate_codec(PassThrough(whisper=False), tmp_path / "manifest.jsonl", codebooks=(1,))[1]
    assert kept["voiced_recall"] == 1.0 and kept["f0_error_pct"] == 0.0
    whispered = evaluate_codec(PassThrough(whisper=True), tmp_path / "manifest.jsonl", codebooks=(1,))[1]
    assert whispered["voiced_recall"] < 0.1
