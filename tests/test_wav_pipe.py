"""WAV read from a pipe as it arrives (delaykit.wav_pipe): the samples equal what soundfile reads from the
whole file, for every sample format it streams; other input is handed back untouched."""

import io

import numpy as np
import pytest
import soundfile

from delaykit.audio import float_to_pcm16, wav_stream_header
from delaykit.errors import AudioError
from delaykit.wav_pipe import read_blocks, read_wav_header


def streamed(data: bytes, block_frames: int = 7) -> tuple[object, np.ndarray]:
    stream = io.BytesIO(data)
    wav, header = read_wav_header(stream)
    assert wav is not None and data.startswith(header)
    blocks = list(read_blocks(stream, wav, block_frames))
    assert all(block.shape[0] == block_frames for block in blocks[:-1])
    return wav, np.concatenate(blocks)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2])
def test_samples_equal_the_whole_file_read(subtype, channels):
    signal = np.random.default_rng(0).uniform(-0.9, 0.9, (1000, channels)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, 16000, subtype=subtype, format="WAV")
    whole, _ = soundfile.read(io.BytesIO(buffer.getvalue()), dtype="float32", always_2d=True)  # [T, C]
    wav, samples = streamed(buffer.getvalue())
    assert (wav.sample_rate, wav.channels, wav.data_bytes) == (16000, channels, whole.size * wav.sample_dtype.itemsize)
    expected = whole.mean(axis=1, dtype=np.float64).astype(np.float32)
    assert samples.dtype == np.float32 and np.array_equal(samples, expected)


def test_extensible_header_and_unknown_length_stream_to_the_end():
    signal = np.linspace(-0.5, 0.5, 333, dtype=np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([signal] * 3, axis=1), 8000, subtype="PCM_16", format="WAVEX")  # 3 channels
    assert buffer.getvalue()[20:22] == b"\xfe\xff"  # WAVE_FORMAT_EXTENSIBLE
    wav, samples = streamed(buffer.getvalue())
    assert wav.channels == 3 and np.abs(samples - signal).max() < 1 / 32767
    piped = wav_stream_header(24000) + float_to_pcm16(signal) + b"\x01"  # sizes unknown; half a sample at the end
    wav, samples = streamed(piped, block_frames=100)
    assert wav.data_bytes is None and samples.shape == (333,)
    assert np.array_equal(samples, np.frombuffer(float_to_pcm16(signal), "<i2") / np.float32(32768))


@pytest.mark.parametrize("data", [b"", b"fLaC\x00\x00\x00\x22" + bytes(40), b"RIFF\xff\xff\xff\xffWAVEfmt "])
def test_other_input_is_handed_back(data):
    stream = io.BytesIO(data)
    wav, header = read_wav_header(stream)
    assert wav is None and data.startswith(header) and header + stream.read() == data


def test_twenty_four_bit_is_left_to_the_whole_file_reader():
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(10, np.float32), 24000, subtype="PCM_24", format="WAV")
    stream = io.BytesIO(buffer.getvalue())
    wav, header = read_wav_header(stream)
    assert wav is None and header + stream.read() == buffer.getvalue()


def test_non_finite_samples_are_refused():
    data = wav_stream_header(24000).replace(b"\x01\x00\x01\x00", b"\x03\x00\x01\x00")  # float tag
    data = data[:34] + b"\x20\x00" + data[36:] + np.array([0.0, np.nan], "<f4").tobytes()
    stream = io.BytesIO(data)
    wav, _ = read_wav_header(stream)
    with pytest.raises(AudioError, match="<stdin>"):
        list(read_blocks(stream, wav, 4))
