"""Training precision: float32, or the forward under bfloat16 autocast where the hardware computes bf16 natively.

Weights, gradients and optimizer state stay float32 either way; autocast runs matrix products in bf16 with float32
accumulation. On a CPU with native bf16 dot products (AVX512-BF16, AMX) that is 1.4-1.8x the training throughput
of float32 for the default shapes (``benchmarks/bench_train.py --precision fp32,bf16``), with the same losses to
3-4 digits at equal steps (checkpoints/README.md). A CPU without them emulates bf16 and is slower, so ``auto``
keeps float32 there.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bf16 dot products


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where the file does not exist."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def native_bf16(device: torch.device, flags: set[str] | None = None) -> bool:
    """Whether ``device`` computes bf16 products natively: a CUDA device that supports bf16, or a CPU with one of
    :data:`NATIVE_BF16_CPU_FLAGS` (``flags``: the CPU's, read from /proc/cpuinfo when not given)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool((cpu_flags() if flags is None else flags) & set(NATIVE_BF16_CPU_FLAGS))
    return False


def resolve_precision(precision: str, device: torch.device, flags: set[str] | None = None) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 where :func:`native_bf16`, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device, flags) else "fp32"
