"""What the apps' live microphone tabs share: the browser's chunks as one continuous signal at the model's
rate, and the order between the chunk being heard and the end of the stream.

The browser sends its microphone (e.g. 48 kHz int16) in chunks of a fraction of a second. Resampling each
chunk alone would end every chunk in silence and start the next from silence, a click at every boundary
that the model hears; :class:`LiveInput` resamples them with one :class:`~delaykit.audio.StreamingResampler`,
so the model hears the recording resampled whole however the browser cut it.

Gradio runs the stream and the stop in separate handlers, so the stop can come while a chunk is still being
heard, and a chunk sent before the stop can come after it. :meth:`LiveInput.hearing` and
:meth:`LiveInput.ending` hold one lock each: the end waits for the chunk being heard, and a chunk after the
end is dropped.
"""

from __future__ import annotations

import threading
import typing as tp
from contextlib import contextmanager

import numpy as np

from delaykit.audio import StreamingResampler, downmix

Chunk = tuple[int, np.ndarray]  # (sample rate, samples [T] or [T, C], int16 or float): a streaming gr.Audio's


def mono_float(samples: np.ndarray) -> np.ndarray:
    """A Gradio audio chunk's samples (int16 or float, ``[T]`` or ``[T, C]``) as mono float32 ``[T]``."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32)
    return downmix(samples.T) if samples.ndim == 2 else samples  # [T]


class LiveInput:
    """One live stream's microphone input at ``model_rate``, heard chunk by chunk until it ends.

    A change of the browser's sample rate mid-stream ends the signal at the old rate (its resampler's tail)
    and goes on at the new one.
    """

    def __init__(self, model_rate: int):
        self.model_rate = model_rate
        self.ended = False
        self._lock = threading.Lock()  # held while a chunk is heard and while the stream ends
        self._resampler: StreamingResampler | None = None

    @contextmanager
    def hearing(self, chunk: Chunk) -> tp.Iterator[np.ndarray | None]:
        """Hold the stream while ``chunk`` is heard: yields its samples at the model's rate, float32 ``[T]``,
        continuing the previous chunks'; None once the stream has ended (the chunk is dropped)."""
        with self._lock:
            yield None if self.ended else self._continue(chunk)

    @contextmanager
    def ending(self) -> tp.Iterator[np.ndarray | None]:
        """End the stream, after the chunk being heard if any, holding it meanwhile: yields the last samples
        at the model's rate (float32 ``[T]``, the few ms the resampler held back), or None when the stream
        had already ended."""
        with self._lock:
            if self.ended:
                yield None
                return
            self.ended = True
            yield self._tail()

    def _continue(self, chunk: Chunk) -> np.ndarray:
        rate, samples = chunk
        tail = np.zeros(0, np.float32)  # [T'] the end of the signal at another rate, if the rate changed
        if self._resampler is None or self._resampler.orig_rate != rate:
            tail = self._tail()
            self._resampler = StreamingResampler(rate, self.model_rate)
        return np.concatenate([tail, self._resampler.push(mono_float(samples))])  # [T' + T_out]

    def _tail(self) -> np.ndarray:
        return self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
