"""Audio in and out: read, downmix, resample, write, chunk into frames, stream PCM16.

Signals are NumPy ``float32`` arrays, mono ``[T]`` or channel-first ``[C, T]``, with samples nominally in
``[-1, 1]``. Models want 24 kHz mono (Mimi), so :func:`load_audio` returns exactly that by default.

Resampling uses our own band-limited polyphase resampler: a Kaiser-windowed sinc evaluated at every output
instant (ratio reduced to ``up / down`` by the GCD, one filter phase per ``up`` position). With the default
32 zero crossings and beta 8.6 the stop band sits around -80 dB and the pass band is flat to ~0.94 of the
lower Nyquist, which is ample for speech; it needs only NumPy. (``soxr`` is faster and cleaner, but would be
one more compiled dependency for a step that costs little next to the models.) :class:`StreamingResampler`
runs the same filter over a signal that arrives in chunks (a microphone), with the same output.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError
from .files import default_file_mode

if tp.TYPE_CHECKING:  # pragma: no cover
    import torch

SAMPLE_RATE = 24000  # Mimi's sample rate, the default target of load_audio
PCM16_SCALE = 32767.0  # float full scale -> int16


def _as_numpy(signal: tp.Any) -> np.ndarray:
    """A NumPy view of a NumPy array, a torch tensor or a sequence (no copy when possible)."""
    if isinstance(signal, np.ndarray):
        return signal
    if hasattr(signal, "detach"):  # torch.Tensor, without importing torch
        tensor = signal.detach().cpu()
        if str(tensor.dtype) in ("torch.bfloat16", "torch.float16"):
            tensor = tensor.float()  # NumPy has no bfloat16
        return tensor.numpy()
    return np.asarray(signal)


def check_finite(signal: np.ndarray, what: str) -> None:
    """Raise AudioError when ``signal`` holds NaN or infinity; ``what`` names the source in the message."""
    if not np.all(np.isfinite(signal)):
        bad = int(np.size(signal) - np.count_nonzero(np.isfinite(signal)))
        raise AudioError(f"{what}: audio contains {bad} non-finite samples (NaN or infinity)")


def downmix(signal: np.ndarray) -> np.ndarray:
    """Mono ``[T]`` from ``[C, T]`` by averaging the channels; a ``[T]`` signal is returned unchanged."""
    if signal.ndim == 1:
        return signal
    if signal.ndim != 2:
        raise ValueError(f"expected [T] or [C, T], got shape {signal.shape}")
    return signal.mean(axis=0, dtype=np.float64).astype(signal.dtype)  # [T]


# ---------------------------------------------------------------------------------------------------------
# Resampling


@dataclass(frozen=True)
class ResamplerSpec:
    """Design of the windowed-sinc low-pass used by :func:`resample`."""

    zero_crossings: int = 32  # sinc lobes kept on each side of the centre, at the cutoff frequency
    rolloff: float = 0.945  # cutoff as a fraction of the lower of the two Nyquist frequencies
    kaiser_beta: float = 8.6  # Kaiser window shape; higher = deeper stop band, wider transition


def _polyphase_table(up: int, down: int, spec: ResamplerSpec) -> tuple[np.ndarray, int]:
    """Filter taps for each of the ``up`` output phases, and the half-width in input samples.

    Output sample ``n`` sits at input time ``t = n * down / up``; with ``base = floor(t)`` and
    ``phase = (n * down) % up`` it is ``sum_k x[base + k] * table[phase, k + half - 1]`` for
    ``k = -half + 1 .. half``.
    """
    cutoff = spec.rolloff * min(1.0, up / down)  # in cycles per input sample, relative to input Nyquist
    half = math.ceil(spec.zero_crossings / cutoff)  # taps on each side, in input samples
    offsets = np.arange(-half + 1, half + 1, dtype=np.float64)  # [2H]
    frac = np.arange(up, dtype=np.float64)[:, None] / up  # [P, 1]
    dist = offsets[None, :] - frac  # [P, 2H] distance of each tap from the output instant
    window = np.i0(spec.kaiser_beta * np.sqrt(np.clip(1.0 - (dist / half) ** 2, 0.0, None)))
    window /= np.i0(spec.kaiser_beta)
    window[np.abs(dist) > half] = 0.0
    table = cutoff * np.sinc(cutoff * dist) * window  # [P, 2H]
    return table, half


def _ratio(orig_rate: int, target_rate: int) -> tuple[int, int]:
    """``(up, down)``: ``target_rate / orig_rate`` in lowest terms; raises ValueError for a rate <= 0."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    g = math.gcd(int(orig_rate), int(target_rate))
    return int(target_rate) // g, int(orig_rate) // g


def _polyphase_outputs(padded: np.ndarray, table: np.ndarray, up: int, down: int, first: int, count: int,
                       offset: int = 0) -> np.ndarray:
    """Outputs ``first .. first + count - 1`` of the resampler, ``[C, count]``.

    ``padded`` ``[C, L]`` is the input preceded by ``half`` zeros (``table`` ``[P, 2H]``, ``P = up``), from
    index ``offset`` of that padded input on; it must reach the last window read. Output ``n`` reads the
    window of ``2H`` samples starting at padded index ``floor(n * down / up) + 1``. Outputs sharing a filter
    phase are evenly spaced, so each phase is one strided matrix-vector product.
    """
    taps = table.shape[1]  # 2H
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps, axis=-1)  # [C, L - 2H + 1, 2H]
    out = np.empty((padded.shape[0], count), dtype=padded.dtype)  # [C, count]
    inv_down = pow(down, -1, up) if up > 1 else 0
    for phase in range(up):
        # the first output index >= first with this phase: outputs of one phase are up apart
        start_index = first + ((phase * inv_down - first) % up)
        if start_index >= first + count:
            continue
        phase_count = -(-(first + count - start_index) // up)
        start = (start_index * down) // up + 1 - offset
        stop = start + (phase_count - 1) * down + 1
        out[:, start_index - first::up] = windows[:, start:stop:down] @ table[phase]  # [C, phase_count]
    return out


def resample(
    signal: np.ndarray,
    orig_rate: int,
    target_rate: int,
    spec: ResamplerSpec = ResamplerSpec(),
) -> np.ndarray:
    """Band-limited resampling of ``[T]`` or ``[C, T]`` from ``orig_rate`` to ``target_rate``.

    The output has ``ceil(T * target_rate / orig_rate)`` samples, float64 for float64 input and float32
    otherwise; equal rates return a copy. The signal is taken as silent before its start and after its end
    (~2500x real time for 22050 -> 24000 Hz on one core). :class:`StreamingResampler` gives the same output
    for a signal that arrives in chunks.
    """
    up, down = _ratio(orig_rate, target_rate)
    x = _as_numpy(signal)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    if orig_rate == target_rate:
        return x.astype(out_dtype, copy=True)
    squeeze = x.ndim == 1
    x2 = x[None, :] if squeeze else x  # [C, T]
    n_out = -(-x2.shape[-1] * up // down)  # ceil
    table, half = _polyphase_table(up, down, spec)  # [P, 2H]
    work = np.float64 if out_dtype == np.float64 else np.float32
    padded = np.pad(x2.astype(work), ((0, 0), (half, half + down)))  # [C, T + 2H + down]
    out = _polyphase_outputs(padded, table.astype(work), up, down, 0, n_out).astype(out_dtype)  # [C, T_out]
    return out[0] if squeeze else out


class StreamingResampler:
    """:func:`resample` of a mono signal that arrives in chunks, e.g. a microphone's.

    The filter's input history is kept from one chunk to the next, so the outputs of :meth:`push` for the
    chunks, followed by :meth:`flush` at the end, equal ``resample`` of the whole signal (float32, up to
    float rounding), however the signal is cut. An output sample leaves once every input it reads has come:
    ``push`` holds back the last ``half_width`` input samples (1.4 ms at 48 kHz, 2.1 ms at 16 kHz), which
    ``flush`` releases by ending the signal with silence; the resampler then starts a new signal. Equal rates
    pass samples through unchanged.
    """

    def __init__(self, orig_rate: int, target_rate: int, spec: ResamplerSpec = ResamplerSpec()):
        self.up, self.down = _ratio(orig_rate, target_rate)
        self.orig_rate, self.target_rate = int(orig_rate), int(target_rate)
        table, self.half_width = _polyphase_table(self.up, self.down, spec)  # [P, 2H], H
        self._table = table.astype(np.float32)  # [P, 2H]
        self._start()

    def _start(self) -> None:
        self._history = np.zeros(self.half_width, np.float32)  # padded input from index _offset on [L]
        self._offset = 0  # index in the padded input (H zeros, then the signal) of _history[0]
        self._received = 0  # input samples of this signal
        self._emitted = 0  # output samples of this signal

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The output samples ``[T_out]`` (float32) that ``samples`` ``[T]`` completes."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono samples [T], got shape {samples.shape}")
        if self.orig_rate == self.target_rate:
            return samples.copy()
        self._history = np.concatenate([self._history, samples])  # [L + T]
        self._received += samples.shape[0]
        # output n reads padded samples up to floor(n * down / up) + 2H, of which there are H + received
        last_readable = self._received - self.half_width  # floor(n * down / up) must stay below this
        return self._emit(-(-max(last_readable, 0) * self.up // self.down))

    def flush(self) -> np.ndarray:
        """The last output samples ``[T_out]`` (the signal ends in silence, as in :func:`resample`); the next
        :meth:`push` starts a new signal."""
        if self.orig_rate == self.target_rate:
            return np.zeros(0, np.float32)
        self._history = np.pad(self._history, (0, self.half_width + self.down))  # [L + H + down]
        tail = self._emit(-(-self._received * self.up // self.down))
        self._start()
        return tail

    def _emit(self, end: int) -> np.ndarray:
        """Outputs ``_emitted .. end - 1`` [end - _emitted]; drops the input no later output reads."""
        count = max(end - self._emitted, 0)
        if count == 0:
            return np.zeros(0, np.float32)
        out = _polyphase_outputs(self._history[None], self._table, self.up, self.down, self._emitted, count,
                                 self._offset)[0]  # [count]
        self._emitted = end
        needed = (end * self.down) // self.up + 1  # padded index of the next output's first tap
        dropped = min(needed - self._offset, self._history.shape[0])  # it may lie beyond what has come
        self._history = self._history[dropped:]
        self._offset += dropped
        return out


# ---------------------------------------------------------------------------------------------------------
# Reading and writing


def load_audio(path: str | os.PathLike, sample_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """Read any file that libsndfile reads (WAV, FLAC, OGG, MP3...) as mono float32 ``[T]``.

    Stereo is downmixed by the mean; the result is resampled to ``sample_rate`` (``None`` keeps the file's
    rate, see :func:`read_audio`). Raises AudioError, naming the file, when it is missing, unreadable, empty
    or holds NaN/infinity.
    """
    signal, rate = read_audio(path)
    mono = downmix(signal)  # [T]
    if sample_rate is not None and rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    return mono


def load_audio_bytes(data: bytes, what: str = "<stdin>", sample_rate: int | None = SAMPLE_RATE) -> np.ndarray:
    """:func:`load_audio` for a whole encoded file held in memory (e.g. WAV or FLAC read from a pipe);
    ``what`` names it in errors."""
    import io

    import soundfile

    if not data:
        raise AudioError(f"{what}: no audio data")
    try:
        signal, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)  # [T, C]
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        reason = getattr(exc, "error_string", None) or str(exc)  # without the BytesIO's repr
        raise AudioError(f"{what}: cannot read audio ({reason})") from exc
    if signal.shape[0] == 0:
        raise AudioError(f"{what}: audio is empty (0 samples)")
    check_finite(signal, what)
    mono = downmix(np.ascontiguousarray(signal.T))  # [T]
    if sample_rate is not None and rate != sample_rate:
        mono = resample(mono, int(rate), sample_rate)
    return mono


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a file as float32 ``[C, T]`` at its own rate, with the checks of :func:`load_audio`."""
    import soundfile

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except (RuntimeError, OSError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file is empty (0 samples)")
    check_finite(data, str(path))
    return np.ascontiguousarray(data.T), int(rate)  # [C, T]


def write_audio(
    path: str | os.PathLike,
    signal: tp.Any,
    sample_rate: int = SAMPLE_RATE,
    subtype: str = "PCM_16",
) -> Path:
    """Write ``[T]`` or ``[C, T]`` (NumPy or torch) to a WAV/FLAC/OGG file chosen by the suffix.

    ``subtype`` is ``"PCM_16"`` (samples clipped to [-1, 1]) or ``"FLOAT"``. ``int16`` samples (e.g. those
    of :func:`float_to_pcm16`) are written unchanged as ``PCM_16``. The file is written to a temporary name
    and renamed, so an error never leaves a half-written file behind.
    """
    import soundfile

    path = Path(path)
    x = _as_numpy(signal)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected [T] or [C, T], got shape {x.shape}")
    if x.dtype == np.int16:
        if subtype.upper() != "PCM_16":
            raise ValueError(f"int16 samples are written as PCM_16, not {subtype}")
    else:
        x = x.astype(np.float32, copy=False)
        check_finite(x, str(path))
        if subtype.upper().startswith("PCM"):
            x = np.clip(x, -1.0, 1.0)  # libsndfile would wrap around, not clip
    data = x if x.ndim == 1 else x.T  # soundfile wants [T, C]
    suffix = path.suffix or ".wav"
    if not path.parent.is_dir():
        raise AudioError(f"{path}: cannot write audio (no directory {path.parent})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        soundfile.write(tmp, data, sample_rate, subtype=subtype)  # format from the suffix
        os.chmod(tmp, default_file_mode())  # mkstemp's file is owner-only; give the usual mode
        os.replace(tmp, path)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise AudioError(f"{path}: cannot write audio ({exc})") from exc
    return path


# ---------------------------------------------------------------------------------------------------------
# Frames and streaming


def frames(signal: np.ndarray | torch.Tensor, frame_size: int):
    """Split ``[..., T]`` into ``[..., N, frame_size]`` frames, zero-padding the last one.

    ``N = ceil(T / frame_size)`` (0 for an empty signal). Works on NumPy arrays and torch tensors alike and
    returns the same kind.
    """
    if frame_size <= 0:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    length = signal.shape[-1]
    n_frames = -(-length // frame_size)
    pad = n_frames * frame_size - length
    lead = tuple(signal.shape[:-1])
    if isinstance(signal, np.ndarray):
        padded = np.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, pad)])  # [..., N * F]
    else:  # torch.Tensor
        import torch.nn.functional as F

        padded = F.pad(signal, (0, pad))  # [..., N * F]
    return padded.reshape(*lead, n_frames, frame_size)  # [..., N, F]


def float_to_pcm16(signal: tp.Any) -> bytes:
    """Little-endian 16-bit PCM bytes of ``[T]`` (or ``[C, T]``, interleaved), clipped to [-1, 1]."""
    x = _as_numpy(signal).astype(np.float32, copy=False)
    check_finite(x, "pcm16 encoder")
    if x.ndim == 2:
        x = x.T  # [T, C] so that channels interleave
    pcm = np.round(np.clip(x, -1.0, 1.0) * PCM16_SCALE).astype("<i2")
    return pcm.tobytes()


class Pcm16StreamWriter:
    """Writes float chunks to a binary stream (e.g. ``sys.stdout.buffer``) as 16-bit PCM as they come.

    With ``wav_header=True`` a WAV header with unknown length (0xFFFFFFFF sizes, as ffmpeg and sox accept
    on pipes) goes first, so ``delaykit ... | aplay`` or ``> out.wav`` both work; otherwise raw ``s16le``.
    """

    def __init__(self, stream: tp.BinaryIO, sample_rate: int = SAMPLE_RATE, channels: int = 1,
                 wav_header: bool = False):
        self.stream = stream
        self.sample_rate = sample_rate
        self.channels = channels
        self.samples_written = 0  # per channel
        if wav_header:
            self.stream.write(wav_stream_header(sample_rate, channels))

    def write(self, chunk: tp.Any) -> None:
        """Encode and write one chunk ``[T]`` (or ``[C, T]``), then flush so a reader sees it at once."""
        x = _as_numpy(chunk)
        if (x.shape[0] if x.ndim == 2 else 1) != self.channels:
            raise ValueError(f"chunk of shape {x.shape} does not have {self.channels} channel(s)")
        self.stream.write(float_to_pcm16(x))
        self.stream.flush()
        self.samples_written += x.shape[-1]


def wav_stream_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 44-byte PCM16 WAV header whose sizes say "unknown" (0xFFFFFFFF), for streaming to a pipe."""
    unknown = 0xFFFFFFFF
    byte_rate = sample_rate * channels * 2
    return (
        b"RIFF" + struct.pack("<I", unknown) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
        + b"data" + struct.pack("<I", unknown)
    )
