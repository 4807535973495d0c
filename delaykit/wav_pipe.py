"""WAV audio read from a pipe as it arrives (``delaykit asr -``): the header first, then the samples in blocks.

A WAV header written to a pipe often cannot know the length, so a data size of 0 or 0xFFFFFFFF (what ffmpeg,
sox and ``audio.wav_stream_header`` write) means "until the end of the stream". Integer PCM of 8, 16 or 32 bits
and 32-bit float are read, ``WAVE_FORMAT_EXTENSIBLE`` headers too; anything else (24-bit PCM, another container
such as FLAC) is left to the whole-file reader, with the bytes already read handed back. Samples come out as
:func:`audio.load_audio` gives them before resampling: mono (the mean of the channels) float32, integers scaled
as libsndfile scales them.
"""

from __future__ import annotations

import dataclasses
import struct
import typing as tp
from dataclasses import dataclass

import numpy as np

from .audio import check_finite

PCM_TAG, FLOAT_TAG, EXTENSIBLE_TAG = 1, 3, 0xFFFE  # format tags of a fmt chunk
UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)  # a data chunk of these sizes runs to the end of the stream
SAMPLE_DTYPES = {(PCM_TAG, 8): np.dtype("u1"), (PCM_TAG, 16): np.dtype("<i2"), (PCM_TAG, 32): np.dtype("<i4"),
                 (FLOAT_TAG, 32): np.dtype("<f4")}  # (format tag, bits per sample) -> stored sample


@dataclass(frozen=True)
class WavStreamFormat:
    """What a WAV header says about the samples that follow it."""

    sample_rate: int
    channels: int
    sample_dtype: np.dtype  # one sample of one channel, as stored
    data_bytes: int | None = None  # None: until the end of the stream

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return self.channels * self.sample_dtype.itemsize

    def to_mono(self, raw: bytes) -> np.ndarray:
        """Mono float32 ``[T]`` of ``raw``, whole interleaved sample frames."""
        stored = np.frombuffer(raw, self.sample_dtype).reshape(-1, self.channels)  # [T, C]
        if self.sample_dtype.kind == "u":  # 8-bit WAV is unsigned around 128
            samples = (stored.astype(np.float32) - 128.0) / 128.0
        elif self.sample_dtype.kind == "i":
            samples = stored.astype(np.float32) / float(2 ** (8 * self.sample_dtype.itemsize - 1))
        else:
            samples = stored.astype(np.float32)
        if self.channels == 1:
            return samples[:, 0]
        return samples.mean(axis=1, dtype=np.float64).astype(np.float32)  # [T]


def read_wav_header(stream: tp.BinaryIO) -> tuple[WavStreamFormat | None, bytes]:
    """Read ``stream`` up to the first sample of a WAV's data chunk. Returns the format and the bytes read; the
    format is None when the stream is not a WAV read here, and the bytes then start the whole file."""
    consumed = bytearray()

    def take(count: int) -> bytes | None:
        chunk = stream.read(count)
        consumed.extend(chunk)
        return chunk if len(chunk) == count else None

    riff = take(12)
    if riff is None or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        return None, bytes(consumed)
    found: WavStreamFormat | None = None
    while (head := take(8)) is not None:
        name, size = head[:4], struct.unpack("<I", head[4:])[0]
        if name == b"data":
            if found is None:
                break
            return dataclasses.replace(found, data_bytes=None if size in UNKNOWN_DATA_SIZES else size), \
                bytes(consumed)
        body = take(size + size % 2)  # chunks are padded to an even size
        if body is None:
            break
        if name == b"fmt " and size >= 16:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == EXTENSIBLE_TAG and size >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the tag
            dtype = SAMPLE_DTYPES.get((tag, bits))
            if dtype is None or channels < 1 or rate < 1:
                break
            found = WavStreamFormat(rate, channels, dtype)
    return None, bytes(consumed)


def read_blocks(stream: tp.BinaryIO, wav: WavStreamFormat, block_frames: int,
                what: str = "<stdin>") -> tp.Iterator[np.ndarray]:
    """The samples after :func:`read_wav_header`, as mono float32 blocks ``[block_frames]`` (the last may be
    shorter) as soon as each has arrived; a partial sample frame at the end is dropped. Raises AudioError,
    naming ``what``, for NaN or infinity."""
    left = wav.data_bytes
    block_bytes = block_frames * wav.frame_bytes
    while left is None or left > 0:
        raw = stream.read(block_bytes if left is None else min(block_bytes, left))  # blocks until it is all there
        if not raw:
            return
        if left is not None:
            left -= len(raw)
        whole = len(raw) - len(raw) % wav.frame_bytes
        if whole:
            block = wav.to_mono(raw[:whole])
            check_finite(block, what)
            yield block
        if len(raw) < block_bytes and left is None:  # a short read: the end of the stream
            return
