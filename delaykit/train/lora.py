"""LoRA fine-tuning: low-rank adapters on the transformers' projections, merged back into plain weights.

``add_lora`` replaces every self-attention and feed-forward projection of the temporal and depth transformers
with a :class:`LoRALinear` (the frozen original plus ``scaling * B @ A``, with ``B`` starting at zero so the
model is unchanged at step 0) and freezes every other parameter. ``merge_lora`` folds the adapters into the
weights and puts the plain layers back, so an exported model has the original architecture and keys and
loads anywhere (Kyutai's readers included).
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..linear import Linear

# Projections that get adapters: self-attention and feed-forward layers of both transformers.
TARGETS = re.compile(r"^(transformer|depformer)\.layers\.\d+\.(self_attn\.(in|out)_projs\.\d+|"
                     r"gating(\.\d+)?\.linear_(in|out)|linear[12](\.\d+)?)$")


class LoRALinear(nn.Module):
    """``base(x) + scaling * (x @ A.T) @ B.T`` with ``base`` frozen."""

    def __init__(self, base: Linear, rank: int, scaling: float):
        super().__init__()
        self.base = base
        self.scaling = scaling
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))  # [r, in]
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))  # [out, r]
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        for parameter in base.parameters():
            parameter.requires_grad_(False)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_rank = (x @ self.lora_a.t()) @ self.lora_b.t()  # [..., out]
        return self.base(x) + self.scaling * low_rank

    def merged(self) -> Linear:
        """The base layer with the adapter folded into its weight."""
        with torch.no_grad():
            delta = self.scaling * (self.lora_b @ self.lora_a)  # [out, in]
            self.base.weight_t += delta.t().to(self.base.weight_t.dtype)
        for parameter in self.base.parameters():
            parameter.requires_grad_(True)
        return self.base


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)  # ModuleList children are attributes named "0", "1", ... too


def add_lora(model: nn.Module, rank: int, scaling: float = 2.0) -> list[str]:
    """Put adapters on the target projections of ``model`` and freeze everything else; returns their names."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    names = [name for name, module in model.named_modules() if isinstance(module, Linear) and TARGETS.match(name)]
    if not names:
        raise ValueError("the model has no projection that LoRA targets")
    for name in names:
        _replace(model, name, LoRALinear(model.get_submodule(name), rank, scaling))
    return names


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter of ``model`` into its weights, in place; the model's keys are the original ones."""
    names = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name in names:
        _replace(model, name, model.get_submodule(name).merged())
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model
