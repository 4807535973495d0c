"""Training precision: auto picks bf16 only where the hardware computes it natively."""

from __future__ import annotations

import pytest
import torch

from delaykit.train.lm import LMTrainConfig
from delaykit.train.precision import cpu_flags, native_bf16, resolve_precision

CPU = torch.device("cpu")


def test_auto_is_bf16_only_with_native_bf16_products():
    assert resolve_precision("auto", CPU, flags={"avx2", "avx512f", "avx512_bf16"}) == "bf16"
    assert resolve_precision("auto", CPU, flags={"avx2", "amx_bf16", "amx_tile"}) == "bf16"
    # AVX512 alone emulates bf16, slower than fp32: auto keeps fp32 there.
    assert resolve_precision("auto", CPU, flags={"avx2", "avx512f", "avx512bw"}) == "fp32"
    assert resolve_precision("auto", CPU, flags=set()) == "fp32"
    assert not native_bf16(torch.device("meta"), flags={"avx512_bf16"})


def test_explicit_precisions_are_kept_and_others_refused():
    assert resolve_precision("fp32", CPU, flags={"avx512_bf16"}) == "fp32"
    assert resolve_precision("bf16", CPU, flags=set()) == "bf16"
    with pytest.raises(ValueError, match="precision 'fp16'"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision 'fp16'"):
        LMTrainConfig(mode="asr", precision="fp16")
    assert LMTrainConfig(mode="asr").precision == "auto"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()
