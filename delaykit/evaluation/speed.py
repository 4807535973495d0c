"""Speed of streaming ASR on this machine: streams served in real time, step time, word latency.

* ``x_real_time`` for B concurrent streams (one batch, 80 ms per step): audio seconds of all streams per
  wall-clock second; B streams are served in real time while a step takes at most 80 ms;
* the time of one 80 ms step (codec encode + LM step) at each B, median and p90;
* word latency: for each word recognised while audio still streams in, when it came out (the end of the frame
  at which the driver emitted it, in audio time) minus when it ended in the reference alignment, i.e. what a
  live caller waits beyond the word itself; median and p90 over words matched by position and text.

Used by ``delaykit bench asr`` and ``benchmarks/bench_asr.py``.
"""

from __future__ import annotations

import platform
import statistics
import time
import typing as tp

import numpy as np
import torch

from ..modes.asr import Transcriber, Word
from .wer import normalize


def step_times(transcriber: Transcriber, signals: list[np.ndarray], streams: int, frames: int) -> list[float]:
    """Seconds per 80 ms step with ``streams`` concurrent items (recordings reused round-robin)."""
    frame = transcriber.frame_size
    times = []
    with transcriber.stream(streams) as stream:
        for step in range(frames):
            pcm = torch.zeros(streams, frame)
            for item in range(streams):
                signal = signals[item % len(signals)]
                start = (step * frame) % max(signal.shape[0] - frame, 1)
                pcm[item] = torch.from_numpy(signal[start:start + frame])
            started = time.perf_counter()
            stream.push(pcm)
            times.append(time.perf_counter() - started)
    return times


def word_latencies(transcriber: Transcriber, rows: list[dict], signals: list[np.ndarray]) -> list[float]:
    """Emission time minus reference end time of each recognised word that matches its reference word."""
    frame_seconds = transcriber.frame_size / transcriber.sample_rate
    latencies = []
    for row, signal in zip(rows, signals, strict=True):
        reference = [(normalize(w)[0] if normalize(w) else "", end) for w, (_, end), _ in row["alignments"]]
        frame = transcriber.frame_size
        padded = np.pad(signal, (0, -signal.shape[0] % frame))
        emitted: list[tuple[str, float]] = []
        with transcriber.stream(1) as stream:
            for step, start in enumerate(range(0, padded.shape[0], frame), start=1):
                for event in stream.push(torch.from_numpy(padded[None, start:start + frame])):
                    if isinstance(event, Word):
                        emitted.append((event.text, step * frame_seconds))
            # Words that only come out in the end-of-input flush are left out: live, more audio would follow.
        for (ref_word, ref_end), (text, at) in zip(reference, emitted, strict=False):
            hyp = normalize(text)
            if hyp and hyp[0] == ref_word:
                latencies.append(at - ref_end)
    return latencies


def benchmark_asr(transcriber: Transcriber, rows: tp.Sequence[dict], signals: tp.Sequence[np.ndarray],
                  streams: tp.Sequence[int] = (1, 4, 16, 64), frames: int = 50,
                  log: tp.Callable[[dict], None] | None = None) -> dict:
    """Every figure above for ``transcriber`` on ``signals`` (with their manifest ``rows``)."""
    frame_seconds = transcriber.frame_size / transcriber.sample_rate
    report: dict = {"threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "streams": []}
    signals = list(signals)
    for count in streams:
        step_times(transcriber, signals, count, 5)  # warm-up
        times = step_times(transcriber, signals, count, frames)
        median = statistics.median(times)
        entry = {"streams": count, "step_ms_median": round(1000 * median, 2),
                 "step_ms_p90": round(1000 * sorted(times)[int(0.9 * len(times))], 2),
                 "x_real_time": round(count * frame_seconds / median, 2), "real_time": bool(median <= frame_seconds)}
        report["streams"].append(entry)
        if log is not None:
            log(entry)
    latencies = word_latencies(transcriber, list(rows), signals)
    report["word_latency_s"] = {"words": len(latencies), "median": round(statistics.median(latencies), 3),
                                "p90": round(sorted(latencies)[int(0.9 * len(latencies))], 3)} if latencies else None
    return report
