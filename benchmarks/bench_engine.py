"""Per-frame step time of delaykit's engine against the reference ``moshi`` 0.2.13, on the same weights.

For each case (LM step, codec encode+decode; tiny and medium sizes) both implementations get the same random
weights, run the same frames with the same thread count in one process, alternating in rounds so that
machine noise hits both alike; the median round is reported. Outputs are checked equal before timing.

    python benchmarks/bench_engine.py [--threads 2] [--frames 100] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import typing as tp
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MOSHIKO_DELAYS = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]
LM_SIZES = {
    # the parity tests' size
    "tiny": dict(dim=64, num_heads=4, num_layers=2, context=100, depformer_dim=32, depformer_num_heads=2,
                 depformer_num_layers=2, depformer_dim_feedforward=int(4.125 * 32), card=64, text_card=100),
    # the size class of delaykit's embedded default models (~15 M parameters), moshiko's stream layout
    "medium": dict(dim=256, num_heads=4, num_layers=6, context=250, depformer_dim=128, depformer_num_heads=2,
                   depformer_num_layers=2, depformer_dim_feedforward=int(4.125 * 128), card=1024,
                   text_card=4000, n_q=16, dep_q=8, delays=MOSHIKO_DELAYS),
    # ~50 M parameters: weight reads dominate, and both implementations wait on memory alike
    "large": dict(dim=512, num_heads=8, num_layers=8, context=250, depformer_dim=256, depformer_num_heads=4,
                  depformer_num_layers=2, depformer_dim_feedforward=int(4.125 * 256), card=2048,
                  text_card=8000, n_q=16, dep_q=8, delays=MOSHIKO_DELAYS),
}


def codec_configs(size: str) -> tuple[dict, tp.Any]:
    """(reference Mimi config, delaykit CodecConfig) of one codec size."""
    from moshi.models.loaders import _mimi_config
    from reference_models import tiny_mimi_config

    from delaykit.codec.model import CodecConfig

    if size == "mimi":
        return _mimi_config, CodecConfig.mimi()
    reference = tiny_mimi_config()
    width, filters, bins, codebook_dim, heads = (32, 4, 32, 16, 4) if size == "tiny" else (128, 16, 1024, 64, 4)
    context = 6 if size == "tiny" else 250
    reference["seanet"].update(dimension=width, n_filters=filters)
    reference["quantizer"].update(dimension=codebook_dim, bins=bins, input_dimension=width,
                                  output_dimension=width)
    reference["transformer"].update(d_model=width, num_heads=heads, context=context, dim_feedforward=4 * width,
                                    input_dimension=width, output_dimensions=[width])
    ours = CodecConfig.from_dict({
        "seanet": {"dimension": width, "n_filters": filters},
        "quantizer": {"dimension": codebook_dim, "input_dimension": width, "output_dimension": width,
                      "n_q": 8, "bins": bins},
        "transformer": dict(d_model=width, num_heads=heads, num_layers=2, dim_feedforward=4 * width,
                            context=context, layer_scale=0.01, max_chunk=8)})
    return reference, ours


@dataclass
class Result:
    case: str
    frames: int
    ours_ms: float  # median per-frame time over rounds
    reference_ms: float
    ratio: float  # ours / reference: below 1 is faster
    identical: bool


def time_rounds(run_ours: tp.Callable[[], None], run_reference: tp.Callable[[], None], rounds: int
                ) -> tuple[float, float]:
    ours, reference = [], []
    run_ours(), run_reference()  # warm-up
    for _ in range(rounds):
        start = time.perf_counter()
        run_ours()
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_reference()
        reference.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(reference)


def bench_lm(size: str, frames: int, rounds: int) -> Result:
    from moshi.models.lm import LMGen
    from reference_models import reference_lm

    from delaykit.lm.generate import GenerationOptions, LMGenerator
    from delaykit.lm.model import LMConfig, LMModel

    theirs, kwargs = reference_lm(**LM_SIZES[size])
    ours = LMModel(LMConfig.from_kyutai(kwargs)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    generator = torch.Generator().manual_seed(0)
    fed = torch.randint(0, kwargs["card"], (1, kwargs["n_q"] - kwargs["dep_q"], frames), generator=generator)
    ours_gen = LMGenerator(ours, GenerationOptions.greedy())
    theirs_gen = LMGen(theirs, use_sampling=False)

    def run(gen: tp.Any, step: tp.Callable[[int], tp.Any]) -> list[torch.Tensor]:
        out = []
        with gen.streaming(1):
            for t in range(frames):
                tokens = step(t)
                if tokens is not None:
                    out.append(tokens)
        return out

    def ours_step(t: int) -> torch.Tensor | None:
        result = ours_gen.step(fed[:, :, t])
        return None if result is None else result.tokens

    def theirs_step(t: int) -> torch.Tensor | None:
        result = theirs_gen.step(fed[:, :, t:t + 1])
        return None if result is None else result[:, :, 0]

    with torch.no_grad():
        identical = all(torch.equal(a, b) for a, b in zip(run(ours_gen, ours_step), run(theirs_gen, theirs_step)))
        ours_s, theirs_s = time_rounds(lambda: run(ours_gen, ours_step), lambda: run(theirs_gen, theirs_step),
                                       rounds)
    return Result(f"LM step, {size}", frames, 1e3 * ours_s / frames, 1e3 * theirs_s / frames,
                  ours_s / theirs_s, identical)


def bench_codec(size: str, frames: int, rounds: int) -> Result:
    """One 80 ms frame in, its codes out, and back to 1920 samples, streaming, 8 codebooks."""
    from reference_models import reference_mimi

    from delaykit.codec.model import CodecModel

    reference_config, ours_config = codec_configs(size)
    theirs = reference_mimi(config=reference_config)
    ours = CodecModel(ours_config).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    frame = ours.frame_size
    audio = torch.randn(1, 1, frames * frame, generator=torch.Generator().manual_seed(0)) * 0.1

    def run(model: tp.Any) -> list[torch.Tensor]:
        codes = []
        with model.streaming(1):
            for t in range(frames):
                frame_codes = model.encode(audio[..., t * frame:(t + 1) * frame])
                model.decode(frame_codes)
                codes.append(frame_codes)
        return codes

    with torch.no_grad():
        # Equal until the reference's ring cache wraps (its chunked steps drift after that, ours do not).
        horizon = 3 if size == "tiny" else min(frames, 125)
        identical = all(torch.equal(a, b) for a, b in list(zip(run(ours), run(theirs)))[:horizon])
        ours_s, theirs_s = time_rounds(lambda: run(ours), lambda: run(theirs), rounds)
    return Result(f"codec encode+decode, {size}", frames, 1e3 * ours_s / frames, 1e3 * theirs_s / frames,
                  ours_s / theirs_s, identical)


CASES: dict[str, tp.Callable[[int, int], Result]] = {
    **{f"codec-{size}": (lambda frames, rounds, size=size: bench_codec(size, frames, rounds))
       for size in ("tiny", "medium", "mimi")},
    **{f"lm-{size}": (lambda frames, rounds, size=size: bench_lm(size, frames, rounds)) for size in LM_SIZES},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [CASES[name](args.frames, args.rounds) for name in args.cases]
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print("| case | delaykit ms/frame | moshi 0.2.13 ms/frame | ratio | identical outputs |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        print(f"| {r.case} | {r.ours_ms:.2f} | {r.reference_ms:.2f} | {r.ratio:.2f}x | {r.identical} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
