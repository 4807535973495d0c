"""LM training throughput of each mode's default shape on this machine: frames (80 ms) per second.

One optimizer step after another on random token windows (no data loading, which the trainers do from memory
anyway), with the trainer's text and audio cross-entropies (not its VAD loss or text noise); the median of ``--steps`` timed steps
after two warm-up steps. Audio seconds per second = frames per second x 0.08. ``--precision fp32,bf16`` measures
each mode in both, side by side (bf16: the forward under autocast, as ``delaykit train lm --set precision=bf16``).

    python benchmarks/bench_train.py [--threads 2] [--steps 5] [--batch 16] [--window 250] [--precision fp32,bf16]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from delaykit.lm.model import LMModel
from delaykit.train.lm import LMTrainConfig, TrainingForward, small_lm_config, weighted_ce
from delaykit.train.loop import decay_groups

TEXT_CARD = 1500


def step_seconds(mode: str, batch: int, window: int, steps: int, precision: str = "fp32") -> tuple[float, int]:
    torch.manual_seed(0)
    lm = LMModel(small_lm_config(mode, text_card=TEXT_CARD)).train()
    forward = TrainingForward(lm)
    optimizer = torch.optim.AdamW(decay_groups(lm, 0.1), lr=1e-4)
    config = LMTrainConfig(mode=mode)
    codes = torch.randint(0, 1024, (batch, lm.num_streams, window))
    codes[:, 0] = torch.randint(0, TEXT_CARD, (batch, window))
    times = []
    for index in range(steps + 2):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out, heads, _ = forward(codes)
        loss, _ = weighted_ce(out.text_logits[:, 0], codes[:, 0], out.text_mask[:, 0],
                              torch.ones(batch, window))
        if lm.dep_q:
            weights = torch.ones(batch, lm.dep_q, window)
            weights[:, 0] = config.first_codebook_weight
            loss = loss + weighted_ce(out.logits, codes[:, 1:1 + lm.dep_q], out.mask, weights)[0]
        if heads is not None:
            loss = loss + 0.0 * heads.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if index >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times), sum(p.numel() for p in lm.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"threads": args.threads, "batch": args.batch, "window": args.window, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "modes": {}}
    precisions = [name.strip() for name in args.precision.split(",") if name.strip()]
    for mode in ("asr", "tts", "dialogue"):
        for precision in precisions:
            seconds, parameters = step_seconds(mode, args.batch, args.window, args.steps, precision)
            frames = args.batch * args.window / seconds
            key = mode if precision == "fp32" else f"{mode}-{precision}"
            report["modes"][key] = {"parameters_m": round(parameters / 1e6, 2), "step_s": round(seconds, 3),
                                    "frames_per_s": round(frames), "audio_s_per_s": round(frames * 0.08, 1)}
            print(json.dumps({key: report["modes"][key]}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
