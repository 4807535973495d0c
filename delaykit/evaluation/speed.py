"""Speed of the streaming modes on this machine, as ``delaykit bench asr|tts|dialogue`` reports it.

ASR (``benchmark_asr``):

* ``x_real_time`` for B concurrent streams (one batch, 80 ms per step): audio seconds of all streams per
  wall-clock second; B streams are served in real time while a step takes at most 80 ms;
* the time of one 80 ms step (codec encode + LM step) at each B, median and p90;
* word latency: for each word recognised while audio still streams in, when it came out (the end of the frame
  at which the driver emitted it, in audio time) minus when it ended in the reference alignment, i.e. what a
  live caller waits beyond the word itself; median and p90 over words matched by position and text.

TTS (``benchmark_tts``), per text and as medians:

* time to first audio with the whole text given, and with the words arriving one at a time as from a language
  model (each pushed as soon as the driver has done all it can with the previous ones), counted from the
  first word; the words it took before the first audio frame;
* ``x_real_time``: seconds of speech per wall-clock second over whole texts, and the time per 80 ms frame.

Dialogue (``benchmark_dialogue``): for B concurrent conversations in one batch, the time of one 80 ms step
(user audio encoded, LM step, agent audio decoded), median and p90, and ``x_real_time`` of all of them; the
mode's target is one conversation's step within 40 ms on 2 cores.
"""

from __future__ import annotations

import platform
import statistics
import time
import typing as tp

import numpy as np
import torch

from ..modes.asr import Transcriber, Word
from ..modes.dialogue import Conversation
from ..modes.script import ScriptWord, parse_text
from ..modes.tts import AudioFrame, Synthesizer
from .wer import normalize


def round_robin_frame(signals: list[np.ndarray], streams: int, step: int, frame: int) -> torch.Tensor:
    """The 80 ms of audio [streams, frame] that each of ``streams`` items hears at ``step``: item i plays
    recording i mod len(signals), looped."""
    pcm = torch.zeros(streams, frame)
    for item in range(streams):
        signal = signals[item % len(signals)]
        start = (step * frame) % max(signal.shape[0] - frame, 1)
        chunk = signal[start:start + frame]
        pcm[item, :chunk.shape[0]] = torch.from_numpy(chunk)
    return pcm


def step_times(driver: Transcriber | Conversation, signals: list[np.ndarray], streams: int, frames: int
               ) -> list[float]:
    """Seconds per 80 ms step of ``streams`` concurrent recognitions or conversations in one batch, each
    hearing a recording (reused round-robin, looped)."""
    times = []
    with driver.stream(streams) as session:
        advance = session.push if isinstance(driver, Transcriber) else session.step
        for step in range(frames):
            pcm = round_robin_frame(signals, streams, step, driver.frame_size)  # [streams, frame]
            started = time.perf_counter()
            advance(pcm)
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


def _machine() -> dict:
    return {"threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__}


def _spread(seconds: tp.Sequence[float]) -> dict:
    """Median and p90 of durations, in milliseconds."""
    ordered = sorted(seconds)
    return {"median": round(1000 * statistics.median(ordered), 2), "p90": round(1000 * ordered[int(0.9 * len(ordered))], 2)}


def benchmark_asr(transcriber: Transcriber, rows: tp.Sequence[dict], signals: tp.Sequence[np.ndarray],
                  streams: tp.Sequence[int] = (1, 4, 16, 64), frames: int = 50,
                  log: tp.Callable[[dict], None] | None = None) -> dict:
    """Every figure above for ``transcriber`` on ``signals`` (with their manifest ``rows``)."""
    frame_seconds = transcriber.frame_size / transcriber.sample_rate
    report: dict = {**_machine(), "streams": []}
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


def first_audio_word_by_word(synthesizer: Synthesizer, text: str) -> tuple[float, int]:
    """(seconds from the first word to the first audio frame, items pushed by then) when the words of ``text``
    arrive one at a time, each as soon as the driver has stepped as far as the previous ones allow."""
    items = parse_text(text)  # words, and <break/> pauses
    started = time.perf_counter()
    with synthesizer.stream() as stream:
        for pushed, item in enumerate(items, start=1):
            stream.push_items([item])
            if pushed == len(items):
                stream.end_of_text()
            if any(isinstance(event, AudioFrame) for event in stream.events()):
                return time.perf_counter() - started, pushed
    raise RuntimeError(f"no audio for {text!r}")


def whole_text_timing(synthesizer: Synthesizer, text: str) -> tuple[float, float, int]:
    """(seconds to the first audio frame, seconds in all, audio frames) for ``text`` given at once."""
    frames, first = 0, None
    started = time.perf_counter()
    with synthesizer.stream() as stream:
        stream.push_text(text)
        stream.end_of_text()
        for event in stream.events():
            if isinstance(event, AudioFrame):
                first = time.perf_counter() - started if first is None else first
                frames += 1
    if first is None:
        raise RuntimeError(f"no audio for {text!r}")
    return first, time.perf_counter() - started, frames


def benchmark_tts(synthesizer: Synthesizer, texts: tp.Sequence[str],
                  log: tp.Callable[[dict], None] | None = None) -> dict:
    """The TTS figures of the module docstring for ``synthesizer`` on ``texts`` (the first is also spoken once
    beforehand, untimed, as a warm-up)."""
    whole_text_timing(synthesizer, texts[0])
    first_whole, first_streamed, words_needed, per_frame = [], [], [], []
    audio_seconds = wall_seconds = 0.0
    for text in texts:
        first, elapsed, frames = whole_text_timing(synthesizer, text)
        streamed, needed = first_audio_word_by_word(synthesizer, text)
        first_whole.append(first)
        first_streamed.append(streamed)
        words_needed.append(needed)
        per_frame.append(elapsed / frames)
        audio_seconds += frames * synthesizer.frame_duration
        wall_seconds += elapsed
        if log is not None:
            log({"words": sum(isinstance(item, ScriptWord) for item in parse_text(text)), "first_audio_s": round(first, 3), "first_audio_word_by_word_s":
                 round(streamed, 3), "words_before_audio": needed, "x_real_time": round(frames *
                 synthesizer.frame_duration / elapsed, 2)})
    return {**_machine(), "texts": len(texts), "audio_seconds": round(audio_seconds, 2),
            "x_real_time": round(audio_seconds / wall_seconds, 2),
            "frame_ms": _spread(per_frame),
            "first_audio_ms": _spread(first_whole),
            "first_audio_word_by_word_ms": _spread(first_streamed),
            "words_before_first_audio_median": statistics.median(words_needed)}


def benchmark_dialogue(conversation: Conversation, signals: tp.Sequence[np.ndarray],
                       streams: tp.Sequence[int] = (1, 4, 16), frames: int = 50,
                       log: tp.Callable[[dict], None] | None = None) -> dict:
    """The dialogue figures of the module docstring for ``conversation`` hearing ``signals``."""
    report: dict = {**_machine(), "streams": []}
    for count in streams:
        step_times(conversation, list(signals), count, 5)  # warm-up
        times = step_times(conversation, list(signals), count, frames)
        median = statistics.median(times)
        entry = {"streams": count, "step_ms": _spread(times),
                 "x_real_time": round(count * conversation.frame_duration / median, 2),
                 "real_time": bool(median <= conversation.frame_duration)}
        report["streams"].append(entry)
        if log is not None:
            log(entry)
    return report
