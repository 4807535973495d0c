"""Several recordings transcribed at once, as concurrent streams of one batch.

Recording ``i`` is item ``i`` of one :class:`~delaykit.modes.asr.TranscriptionStream`: every 80 ms step
feeds the next frame of each recording that still has audio (the others are masked out), and a recording is
flushed as soon as its audio ends, so its last words, then an :class:`ItemFinished`, come out at that point
while longer recordings carry on. The stream's items are independent, so each recording gets exactly the
words it gets alone (``Transcriber.transcribe``).

Usage::

    for event in transcribe_batch(transcriber, [signal_a, signal_b]):   # mono float32 [T] at 24 kHz each
        if isinstance(event, Word): ...             # event.item says which recording
        elif isinstance(event, ItemFinished): ...   # every word of recording event.item is out
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import AudioError
from .asr import EndOfSpeech, Transcriber, Word


@dataclass(frozen=True)
class ItemFinished:
    """Recording ``item`` has been flushed: all its words and end-of-speech events came before this."""

    item: int


BatchEvent = Word | EndOfSpeech | ItemFinished


def transcribe_batch(transcriber: Transcriber, signals: tp.Sequence[np.ndarray]) -> tp.Iterator[BatchEvent]:
    """Words and end-of-speech events of each signal (mono float32 [T] at the transcriber's sample rate),
    streamed frame by frame in one batch; ``event.item`` is the index of the signal. Text frames
    (``TranscribeOptions.text_frames``) are not passed on."""
    if not signals:
        return
    frame = transcriber.frame_size
    for index, signal in enumerate(signals):
        if signal.ndim != 1 or signal.size == 0:
            raise AudioError(f"recording {index}: expected non-empty mono samples [T], got shape {signal.shape}")
    batch = len(signals)
    frame_counts = [-(-signal.shape[0] // frame) for signal in signals]
    with transcriber.stream(batch) as stream:
        for step in range(max(frame_counts)):
            pcm = torch.zeros(batch, frame)  # [B, frame]
            active = torch.zeros(batch, dtype=torch.bool)  # [B]
            for item, signal in enumerate(signals):
                if step < frame_counts[item]:
                    chunk = signal[step * frame:(step + 1) * frame]
                    pcm[item, :chunk.shape[0]] = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
                    active[item] = True
            yield from _passed_on(stream.push(pcm, active))
            for item in range(batch):
                if frame_counts[item] == step + 1:
                    finished = torch.zeros(batch, dtype=torch.bool)
                    finished[item] = True
                    padded = frame_counts[item] * frame - signals[item].shape[0]
                    yield from _passed_on(stream.flush(finished, padded_samples=padded))
                    yield ItemFinished(item)


def _passed_on(events: tp.Iterable[tp.Any]) -> tp.Iterator[BatchEvent]:
    for event in events:
        if isinstance(event, (Word, EndOfSpeech)):
            yield event
