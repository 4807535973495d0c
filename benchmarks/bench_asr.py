"""Streaming ASR on CPU: real-time factor per stream count, step time, and word latency.

For a checkpoint (default: the shipped ``default-asr``) and a set of recordings (default: the first held-out
utterances), it measures in one run:

* ``x_real_time`` for B concurrent streams (one batch, 80 ms per step): audio seconds of all streams per
  wall-clock second; B streams are served in real time while ``x_real_time / B >= 1``;
* the time of one 80 ms step (codec encode + LM step) at each B, median and p90;
* word latency: for each word recognised while audio still streams in, when it came out (the end of the frame at which the driver emitted
  it, in audio time) minus when it ended in the reference alignment, i.e. what a live caller waits beyond
  the word itself; reported as median and p90 over words matched by position and text.

    python benchmarks/bench_asr.py [--model default-asr] [--data runs/data/heldout] [--count 16]
                                   [--streams 1,4,16,64] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import delaykit
from delaykit.audio import load_audio
from delaykit.data.manifest import read_corpus
from delaykit.evaluation.wer import normalize
from delaykit.modes.asr import Word


def step_times(transcriber, signals: list[np.ndarray], streams: int, frames: int) -> list[float]:
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


def word_latencies(transcriber, rows: list[dict], signals: list[np.ndarray]) -> list[float]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default-asr")
    parser.add_argument("--data", default="runs/data/heldout")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--streams", default="1,4,16,64")
    parser.add_argument("--frames", type=int, default=50, help="steps timed per stream count")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    transcriber = delaykit.load(args.model, device="cpu").transcriber()
    rows = read_corpus(args.data)[:args.count]
    signals = [load_audio(row["path"], transcriber.sample_rate) for row in rows]
    frame_seconds = transcriber.frame_size / transcriber.sample_rate
    report = {"model": args.model, "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "streams": []}
    for streams in (int(s) for s in args.streams.split(",")):
        step_times(transcriber, signals, streams, 5)  # warm-up
        times = step_times(transcriber, signals, streams, args.frames)
        median = statistics.median(times)
        entry = {"streams": streams, "step_ms_median": round(1000 * median, 2),
                 "step_ms_p90": round(1000 * sorted(times)[int(0.9 * len(times))], 2),
                 "x_real_time": round(streams * frame_seconds / median, 2),
                 "real_time": bool(median <= frame_seconds)}
        report["streams"].append(entry)
        print(json.dumps(entry), flush=True)
    latencies = word_latencies(transcriber, rows, signals)
    report["word_latency_s"] = {"words": len(latencies), "median": round(statistics.median(latencies), 3),
                                "p90": round(sorted(latencies)[int(0.9 * len(latencies))], 3)} if latencies else None
    print(json.dumps(report["word_latency_s"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
