"""Multi-process training with torch.distributed: who this process is, and the few collective decisions.

Launched by ``torchrun --nproc-per-node N delaykit train lm ...`` (or across machines with ``--nnodes``), every
process trains the same model on its own data stream; DDP averages the gradients. Gloo serves CPU runs, NCCL
GPU runs. Decisions that depend on a clock (stop at the time budget, write a checkpoint now) are taken by all
ranks together, so that no rank waits forever in a collective that another has left; only rank 0 writes
files.
"""

from __future__ import annotations

import os
import typing as tp
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run (a single process when ``world_size`` is 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: tp.Any) -> list[tp.Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        gathered: list[tp.Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE...)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank)
