"""Tests of delaykit.audio: resampling accuracy (whole and streamed), reading/downmixing, error cases, frames,
PCM16 streaming."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile
import torch

from delaykit.audio import (
    Pcm16StreamWriter,
    StreamingResampler,
    downmix,
    float_to_pcm16,
    frames,
    load_audio,
    read_audio,
    resample,
    wav_stream_header,
    write_audio,
)
from delaykit.errors import AudioError


def sine(freq: float, rate: int, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t + phase)


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    noise = estimate - reference
    return float(10 * np.log10(np.mean(reference**2) / np.mean(noise**2)))


@pytest.mark.parametrize(
    ("orig", "target", "freq"),
    [(22050, 24000, 1000.0), (48000, 24000, 3000.0), (16000, 24000, 440.0), (44100, 24000, 7000.0)],
)
def test_resample_matches_analytic_sine(orig: int, target: int, freq: float) -> None:
    x = sine(freq, orig, 1.0).astype(np.float32)
    y = resample(x, orig, target)
    assert y.dtype == np.float32
    assert len(y) == -(-len(x) * target // orig)
    reference = sine(freq, target, len(y) / target)
    edge = target // 20  # the ends see zero padding
    assert snr_db(y[edge:-edge], reference[edge:-edge]) > 80
    assert np.max(np.abs(y[edge:-edge] - reference[edge:-edge])) < 1e-3


def test_resample_removes_content_above_new_nyquist() -> None:
    x = sine(15000.0, 48000, 1.0)  # above 12 kHz: must not alias into the 24 kHz output
    y = resample(x, 48000, 24000)
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) < 1e-3


def test_resample_multichannel_and_identity() -> None:
    x = np.stack([sine(500.0, 22050, 0.5), sine(900.0, 22050, 0.5)]).astype(np.float32)  # [2, T]
    y = resample(x, 22050, 24000)
    assert y.shape == (2, -(-x.shape[1] * 24000 // 22050))
    np.testing.assert_allclose(y[0], resample(x[0], 22050, 24000), atol=1e-6)
    same = resample(x, 24000, 24000)
    assert same is not x
    np.testing.assert_array_equal(same, x)


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10), 0, 24000)


def streamed(resampler: StreamingResampler, signal: np.ndarray, sizes: list[int]) -> np.ndarray:
    """``signal`` [T] pushed in chunks of ``sizes`` (cycled), then flushed: the outputs joined [T_out]."""
    outputs, start, index = [], 0, 0
    while start < signal.shape[0]:
        size = sizes[index % len(sizes)]
        outputs.append(resampler.push(signal[start:start + size]))
        start, index = start + size, index + 1
    outputs.append(resampler.flush())
    return np.concatenate(outputs)


@pytest.mark.parametrize("orig", [44100, 48000, 16000, 22050, 24000])
@pytest.mark.parametrize("sizes", [[1], [7, 300], [4410], [24000, 1, 2, 999], [10**6]],
                         ids=["1", "7+300", "4410", "mixed", "whole"])
def test_streaming_resampler_equals_resampling_whole(orig: int, sizes: list[int]) -> None:
    """However a signal is cut, its chunks resampled in turn (and the end flushed) are the signal resampled
    whole, from its very first sample on: no discontinuity at the boundaries."""
    signal = (0.3 * np.random.default_rng(orig).standard_normal(orig // 2)).astype(np.float32)  # 0.5 s [T]
    whole = resample(signal, orig, 24000)  # [T_out]
    chunked = streamed(StreamingResampler(orig, 24000), signal, sizes)
    assert chunked.dtype == np.float32 and chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() < 1e-6


def test_streaming_resampler_holds_back_only_its_half_width() -> None:
    resampler = StreamingResampler(48000, 24000)
    signal = sine(440.0, 48000, 0.5).astype(np.float32)  # [T]
    first = resampler.push(signal)  # [T_out - a few]
    assert first.shape[0] == (signal.shape[0] - resampler.half_width) // 2
    assert resampler.half_width / 48000 < 0.002  # under 2 ms of latency
    whole = resample(signal, 48000, 24000)  # [T_out]
    np.testing.assert_allclose(np.concatenate([first, resampler.flush()]), whole, atol=1e-6)
    again = streamed(resampler, signal[:1000], [333])  # after a flush the next push starts a new signal
    np.testing.assert_allclose(again, resample(signal[:1000], 48000, 24000), atol=1e-6)
    assert resampler.push(np.zeros(0, np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="mono"):
        resampler.push(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match="positive"):
        StreamingResampler(0, 24000)


def test_load_audio_downmixes_and_resamples(tmp_path) -> None:
    left = sine(1000.0, 22050, 0.5)
    right = 0.5 * sine(1000.0, 22050, 0.5)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    mono = load_audio(path, 24000)
    assert mono.ndim == 1 and mono.dtype == np.float32
    assert len(mono) == -(-len(left) * 24000 // 22050)
    expected = 0.75 * sine(1000.0, 24000, len(mono) / 24000)
    assert snr_db(mono[1200:-1200], expected[1200:-1200]) > 80
    native, rate = read_audio(path)
    assert rate == 22050 and native.shape == (2, len(left))


def test_downmix_mean() -> None:
    stereo = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 1.0]], dtype=np.float32)  # [C, T]
    np.testing.assert_allclose(downmix(stereo), [0.5, 0.0, 0.0])
    mono = np.ones(4, dtype=np.float32)
    assert downmix(mono) is mono


def test_nan_audio_is_rejected(tmp_path) -> None:
    x = sine(440.0, 16000, 0.1).astype(np.float32)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*non-finite"):
        load_audio(path)
    with pytest.raises(AudioError, match="non-finite"):
        write_audio(tmp_path / "out.wav", np.array([0.0, np.inf]), 24000)


def test_empty_audio_is_rejected(tmp_path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, dtype=np.float32), 24000)
    with pytest.raises(AudioError, match=r"empty\.wav.*empty"):
        load_audio(path)


def test_unreadable_and_missing_files_name_the_file(tmp_path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"garbage\.wav: cannot read audio"):
        load_audio(garbage)
    with pytest.raises(AudioError, match=r"missing\.wav: no such audio file"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_write_audio_round_trip_and_clipping(tmp_path) -> None:
    x = np.array([0.0, 0.5, -0.5, 2.0, -2.0], dtype=np.float32)
    path = write_audio(tmp_path / "out.wav", torch.from_numpy(x), 24000)
    back, rate = soundfile.read(path, dtype="float32")
    assert rate == 24000
    np.testing.assert_allclose(back, [0.0, 0.5, -0.5, 1.0, -1.0], atol=1e-4)
    write_audio(tmp_path / "float.wav", x, 24000, subtype="FLOAT")
    back, _ = soundfile.read(tmp_path / "float.wav", dtype="float32")
    np.testing.assert_array_equal(back, x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.wav", "out.wav"]  # no temp files left


def test_frames_zero_pads_last_frame() -> None:
    x = np.arange(1, 8, dtype=np.float32)  # [7]
    f = frames(x, 3)
    assert f.shape == (3, 3)
    np.testing.assert_array_equal(f[-1], [7, 0, 0])
    batch = torch.arange(1, 9, dtype=torch.float32).reshape(2, 4)  # [2, 4]
    tf = frames(batch, 3)
    assert isinstance(tf, torch.Tensor) and tf.shape == (2, 2, 3)
    assert tf[1, 1].tolist() == [8.0, 0.0, 0.0]
    assert frames(np.zeros(6), 3).shape == (2, 3)  # exact multiple: no padding frame
    assert frames(np.zeros(0), 1920).shape == (0, 1920)


def test_pcm16_stream_writer() -> None:
    buffer = io.BytesIO()
    writer = Pcm16StreamWriter(buffer, sample_rate=24000, wav_header=True)
    writer.write(np.array([0.0, 1.0, -1.0], dtype=np.float32))
    writer.write(torch.tensor([0.5, 3.0]))
    data = buffer.getvalue()
    assert data[:44] == wav_stream_header(24000)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack("<HHI", data[20:28]) == (1, 1, 24000)
    samples = np.frombuffer(data[44:], dtype="<i2")
    assert samples.tolist() == [0, 32767, -32767, 16384, 32767]
    assert writer.samples_written == 5
    assert float_to_pcm16(np.zeros((2, 2))) == b"\x00" * 8
    with pytest.raises(ValueError, match="channel"):
        writer.write(np.zeros((2, 4)))


def test_write_into_a_missing_directory_names_the_file(tmp_path) -> None:
    from delaykit.audio import write_audio
    from delaykit.errors import AudioError

    with pytest.raises(AudioError, match="no directory"):
        write_audio(tmp_path / "missing" / "out.wav", np.zeros(10))


def test_write_audio_writes_int16_samples_unchanged(tmp_path) -> None:
    samples = np.frombuffer(float_to_pcm16(np.array([0.0, 0.3, -0.7, 1.0, -1.0, 0.123456], dtype=np.float32)), "<i2")
    path = write_audio(tmp_path / "pcm.wav", samples, 24000)
    back, _ = soundfile.read(path, dtype="int16")
    np.testing.assert_array_equal(back, samples)  # as a pipe would carry them (libsndfile's own rounding differs)
    with pytest.raises(ValueError, match="PCM_16"):
        write_audio(tmp_path / "float.wav", samples, 24000, subtype="FLOAT")
