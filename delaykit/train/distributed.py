"""Multi-process training with torch.distributed: who this process is, and the few collective decisions.

Launched by ``torchrun --nproc-per-node N delaykit train lm ...`` (or across machines with ``--nnodes``), every
process trains the same model on its own data stream, and :func:`wrap_for_ranks` shares the model between
them in one of two ways: DDP keeps a whole copy on every rank and averages the gradients; FSDP (PyTorch's
``fully_shard``) keeps only a 1/N shard of every parameter, gradient and optimizer moment on each rank and
gathers a layer's weights just for its forward and backward, for models whose weights and optimizer state do
not fit one device. Both compute the same update. Gloo serves CPU runs, NCCL GPU runs. Decisions that depend on a clock (stop at the time budget, write a checkpoint now) are taken by all
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


STRATEGIES = ("ddp", "fsdp")


def wrap_for_ranks(model: torch.nn.Module, strategy: str, device: torch.device,
                   shard_units: tp.Sequence[torch.nn.Module] = ()) -> torch.nn.Module:
    """``model`` shared between the ranks of the process group: wrapped in DDP, or sharded in place with FSDP,
    each of ``shard_units`` (e.g. transformer layers) its own unit, gathered one at a time, and the rest of the
    model one unit. Build the optimizer after this call: under FSDP it must hold the sharded parameters."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy != "fsdp":
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in shard_units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor as a whole: a sharded one (FSDP's DTensor) gathered from every rank, a plain one as it is.
    Collective for a sharded tensor: every rank must call it, in the same order."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def whole_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict as whole tensors, copied to the CPU: what a checkpoint holds however the
    training run shared the model (a collective call under FSDP)."""
    return {key: whole(value).detach().cpu().clone() for key, value in module.state_dict().items()}


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> dict:
    """The optimizer's state dict; under FSDP (``sharded``) its moments gathered whole and keyed by parameter
    name (complete on rank 0 only, which is the rank that writes it; a collective call)."""
    if not sharded:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                         sharded: bool) -> None:
    """Restore what :func:`optimizer_state` saved; under FSDP every rank reads the whole state and keeps its
    shard of it."""
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def load_whole_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load whole tensors (from :func:`whole_state_dict`) into ``module``, sharded or not: a sharded
    parameter keeps its own rank's slice of the whole tensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    current = module.state_dict()
    local = {}
    for key, value in state.items():
        target = current.get(key)
        if isinstance(target, DTensor):
            value = distribute_tensor(value.to(target.device, target.dtype), target.device_mesh, target.placements)
        local[key] = value
    module.load_state_dict(local, strict=True)


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


def finish_distributed() -> None:
    """Leave the process group together: wait for every rank, then tear the group down. A rank that tears
    down and exits while another is still writing its last files can abort (gloo: "terminate called without
    an active exception"), so none leaves before all are done."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
