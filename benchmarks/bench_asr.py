"""Streaming ASR speed on CPU (see delaykit.evaluation.speed): streams served in real time, step time, word
latency, for a checkpoint (default: the shipped ``default-asr``) on held-out recordings.

    python benchmarks/bench_asr.py [--model default-asr] [--data runs/data/heldout] [--count 16]
                                   [--streams 1,4,16,64] [--threads 2] [--json out.json]

The same as ``delaykit bench asr``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import delaykit
from delaykit.audio import load_audio
from delaykit.data.manifest import read_corpus
from delaykit.evaluation.speed import benchmark_asr


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
    report = benchmark_asr(transcriber, rows, signals, [int(s) for s in args.streams.split(",")], args.frames,
                           log=lambda entry: print(json.dumps(entry), flush=True))
    report["model"] = args.model
    print(json.dumps(report["word_latency_s"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
