"""Conditioning of the LM: lookup-table and tensor conditioners, and the fuser that adds or cross-attends them.

A conditioner turns one attribute of a request (a discrete value such as a CFG strength, or a tensor such as
speaker embeddings) into ``(embedding [B, S, dim], mask [B, S])``. The fuser sums some conditions into every
step's input and concatenates others along S as the cross-attention source.
"""

from __future__ import annotations

import hashlib
import typing as tp
from dataclasses import dataclass, field

import torch
from torch import nn

from ..linear import Linear
from ..transformer import sin_embedding


class Condition(tp.NamedTuple):
    embedding: torch.Tensor  # [B, S, dim]
    mask: torch.Tensor  # [B, S] bool


@dataclass
class TensorInput:
    """A tensor attribute: values [B, S, C] and which of them are real [B, S]."""

    values: torch.Tensor
    mask: torch.Tensor


class Conditioner(nn.Module):
    """Shared tail: project to the model width and replace masked positions by a learnt padding."""

    def __init__(self, dim: int, output_dim: int, learn_padding: bool = True):
        super().__init__()
        self.dim = dim
        self.output_proj = Linear(dim, output_dim, bias=False)
        self.learnt_padding = nn.Parameter(torch.randn(1, 1, output_dim) * 0.2) if learn_padding else None

    def encode(self, values: tp.Any) -> Condition:
        raise NotImplementedError

    def forward(self, values: tp.Any) -> Condition:
        embedding, mask = self.encode(values)
        if embedding.shape[1] == 0:  # an empty condition still gives one (padding) position
            embedding = embedding.new_zeros(embedding.shape[0], 1, embedding.shape[2])
            mask = mask.new_zeros(mask.shape[0], 1)
        embedding = self.output_proj(embedding)
        present = mask.float()[..., None]  # [B, S, 1]
        padding = self.learnt_padding if self.learnt_padding is not None else 0.0
        return Condition(embedding * present + padding * (1 - present), mask)


class LookupConditioner(Conditioner):
    """A value from a small set (or hashed into ``n_bins``), one learnt vector each; None means absent."""

    def __init__(self, n_bins: int, dim: int, output_dim: int, possible_values: list[str] | None = None,
                 tokenizer: str = "noop", learn_padding: bool = True, **_: tp.Any):
        super().__init__(dim, output_dim, learn_padding)
        if tokenizer != "noop":
            raise ValueError(f"unknown conditioner tokenizer {tokenizer!r}")
        self.n_bins = n_bins
        self.possible_values = {value: index for index, value in enumerate(possible_values or [])}
        self.embed = nn.Embedding(n_bins + 1, dim)  # the last row is the "absent" value

    def _index(self, value: str | None) -> int:
        if value is None:
            return self.n_bins
        if self.possible_values:
            if value not in self.possible_values:
                raise ValueError(f"{value!r} is not one of {sorted(self.possible_values)}")
            return self.possible_values[value]
        return int(hashlib.sha256(value.encode("utf-8")).hexdigest(), 16) % self.n_bins

    def encode(self, values: list[str | None]) -> Condition:
        device = self.embed.weight.device
        ids = torch.tensor([[self._index(value)] for value in values], device=device)  # [B, 1]
        mask = torch.tensor([[value is not None] for value in values], device=device)  # [B, 1]
        return Condition(self.embed(ids), mask)

    def embed_indices(self, ids: torch.Tensor) -> torch.Tensor:
        """Projected embeddings [B, T, output_dim] of value indices ``ids`` [B, T] (``n_bins`` = absent): a
        condition that changes over time, as training on packed utterances of several voices needs. Equal, at
        each position, to what ``forward`` gives for that value."""
        present = (ids != self.n_bins).float()[..., None]  # [B, T, 1]
        padding = self.learnt_padding if self.learnt_padding is not None else 0.0
        return self.output_proj(self.embed(ids)) * present + padding * (1 - present)


class TensorConditioner(Conditioner):
    """A tensor attribute given as ``TensorInput`` (e.g. speaker embeddings)."""

    def __init__(self, dim: int, output_dim: int, learn_padding: bool = True, **_: tp.Any):
        super().__init__(dim, output_dim, learn_padding)

    def encode(self, values: TensorInput) -> Condition:
        return Condition(values.values.to(self.output_proj.weight), values.mask.to(self.output_proj.weight.device))


def build_conditioner(config: dict, output_dim: int) -> Conditioner:
    """From a checkpoint's ``{"type": "lut", "lut": {...}}`` entry."""
    kind = config["type"]
    options = {k: v for k, v in config[kind].items() if k not in ("output_dim", "device")}  # set by the model
    if kind == "lut":
        return LookupConditioner(output_dim=output_dim, **options)
    if kind == "tensor":
        return TensorConditioner(output_dim=output_dim, **options)
    raise ValueError(f"unknown conditioner type {kind!r}")


class ConditionProvider(nn.Module):
    """All conditioners of a model, by attribute name."""

    def __init__(self, conditioners: dict[str, Conditioner]):
        super().__init__()
        self.conditioners = nn.ModuleDict(conditioners)

    def forward(self, attributes: dict[str, tp.Any]) -> dict[str, Condition]:
        missing = set(self.conditioners) - set(attributes)
        if missing:
            raise ValueError(f"missing conditioning attributes: {sorted(missing)}")
        return {name: conditioner(attributes[name]) for name, conditioner in self.conditioners.items()}


@dataclass
class FuserConfig:
    """Which conditions are summed into each step's input and which are cross-attended."""

    sum: list[str] = field(default_factory=list)
    cross: list[str] = field(default_factory=list)
    cross_attention_pos_emb: bool = False
    cross_attention_pos_emb_scale: float = 1.0


class ConditionFuser:
    """Combines conditions into a per-step sum [B, 1, dim] and a cross-attention source [B, S, dim]."""

    def __init__(self, config: FuserConfig):
        self.config = config

    def summed(self, conditions: dict[str, Condition]) -> torch.Tensor | None:
        total = None
        for name in self.config.sum:
            embedding = conditions[name].embedding
            if embedding.shape[1] != 1:
                raise ValueError(f"summed condition {name!r} must have one position, got {embedding.shape[1]}")
            total = embedding if total is None else total + embedding
        return total

    def cross_source(self, conditions: dict[str, Condition]) -> torch.Tensor | None:
        parts = [conditions[name].embedding for name in self.config.cross]
        if not parts:
            return None
        source = torch.cat(parts, dim=1)  # [B, S, dim]
        if self.config.cross_attention_pos_emb:
            positions = torch.arange(source.shape[1], device=source.device)[None]  # [1, S]
            embedding = sin_embedding(positions, source.shape[-1], 10_000, torch.float32)
            source = source + self.config.cross_attention_pos_emb_scale * embedding.to(source.dtype)
        return source
