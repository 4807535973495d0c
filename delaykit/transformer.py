"""The streaming transformer shared by the codec and the multi-stream LM.

One implementation serves three uses, chosen by ``TransformerConfig``:
- the Mimi encoder/decoder transformers (LayerNorm, GELU MLP, layer scale, RoPE, context 250);
- the LM's temporal transformer (RMSNorm, SiLU gating, RoPE, long context, optional cross-attention);
- the depth transformer over a frame's codebooks (different weights for each codebook step).

Streaming keeps, per attention layer, a ring KV cache with the absolute position of every slot, so batch
items may sit at different positions (after a per-item reset) and still share one batched step. State-dict
keys follow Kyutai's published checkpoints (``self_attn.in_projs.0.weight``, ``gating.linear_in.weight``...),
and the fused ``in_proj_weight`` form found in older files is split on load.
"""

from __future__ import annotations

import math
import typing as tp
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear
from .streaming import StreamingModule, StreamState


@dataclass
class TransformerConfig:
    """Shape and flavour of a streaming transformer."""

    d_model: int
    num_heads: int
    num_layers: int
    dim_feedforward: int | list[int] = 2048  # a list gives one size per weight set (weights per step)
    causal: bool = True
    context: int | None = None  # attention span in steps; None = unbounded (needs weights_per_step)
    positional_embedding: str = "rope"  # rope | sin | none
    max_period: float = 10_000.0
    positional_scale: float = 1.0  # only for "sin"
    norm: str = "layer_norm"  # layer_norm | layer_norm_f32 | rms_norm | rms_norm_f32
    gating: str = "none"  # none (GELU MLP) or an activation name for a gated FFN (silu, gelu...)
    layer_scale: float | None = None
    kv_repeat: int = 1  # grouped-query attention: heads per key/value head
    weights_per_step: int = 0  # >0: separate projections for each of this many steps
    weights_per_step_schedule: list[int] | None = None  # step -> weight set, to share weights
    cross_attention: bool = False
    max_chunk: int = 1  # largest number of steps one streaming call may carry

    @property
    def num_weight_sets(self) -> int:
        if not self.weights_per_step:
            return 1
        if self.weights_per_step_schedule:
            return max(self.weights_per_step_schedule) + 1
        return self.weights_per_step


# ----------------------------------------------------------------------------------------------------------
# Normalisation, layer scale, activations


class RMSNorm(nn.Module):
    """RMS normalisation with a learnt gain stored as ``alpha`` of shape [1, 1, dim]."""

    def __init__(self, dim: int, eps: float, compute_dtype: torch.dtype | None = None):
        super().__init__()
        self.eps = eps
        self.compute_dtype = compute_dtype
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        if self.compute_dtype is not None and in_dtype != self.compute_dtype:
            x = x.to(self.compute_dtype)
        weight = self.alpha.view(-1)
        if weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
        normed = F.rms_norm(x, weight.shape, weight, self.eps)
        return normed if normed.dtype == in_dtype else normed.to(in_dtype)


class LayerNormF32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "layer_norm":
        return nn.LayerNorm(dim, eps=1e-5)
    if kind == "layer_norm_f32":
        return LayerNormF32(dim, eps=1e-8)
    if kind == "rms_norm":
        return RMSNorm(dim, eps=1e-5)
    if kind == "rms_norm_f32":
        return RMSNorm(dim, eps=1e-8, compute_dtype=torch.float32)
    raise ValueError(f"unknown norm {kind!r}")


class LayerScale(nn.Module):
    """Per-channel residual scale (initialised small so deep stacks start close to identity)."""

    def __init__(self, dim: int, init: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


_ACTIVATIONS: dict[str, tp.Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "elu": F.elu,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


class GatedFeedForward(nn.Module):
    """``linear_out(act(gate) * value)`` with gate and value from one fused ``linear_in``."""

    def __init__(self, dim: int, dim_feedforward: int, activation: str):
        super().__init__()
        # Keeps the parameter count of a plain 4x MLP: 21/8 for that case, 2/3 of the width otherwise.
        hidden = (21 * dim) // 8 if dim_feedforward == 4 * dim else (2 * dim_feedforward) // 3
        self.hidden = hidden
        self.activation = _ACTIVATIONS[activation]
        self.linear_in = Linear(dim, 2 * hidden, bias=False)
        self.linear_out = Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_and_value = self.linear_in(x)  # [B, T, 2H]
        gate, value = gate_and_value.split(self.hidden, dim=-1)  # [B, T, H] each
        return self.linear_out(self.activation(gate) * value)


# ----------------------------------------------------------------------------------------------------------
# Positions


def rope_rotation(positions: torch.Tensor, head_dim: int, max_period: float) -> torch.Tensor:
    """Unit complex rotations [B, T, D/2] for absolute ``positions`` [B, T], shared by every layer."""
    pair_index = torch.arange(head_dim // 2, device=positions.device, dtype=torch.float32)
    frequencies = torch.exp(pair_index * (-math.log(max_period) * 2 / head_dim))  # [D/2]
    angles = positions.float()[..., None] * frequencies  # [B, T, D/2]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate the interleaved (real, imaginary) pairs of ``x`` [B, T, ..., D] by ``rotation`` [B, T, D/2]."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # [B, T, ..., D/2]
    rotation = rotation.view(*rotation.shape[:2], *(1,) * (x.dim() - 3), rotation.shape[-1])
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


def sin_embedding(positions: torch.Tensor, dim: int, max_period: float, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal embedding [B, T, dim] (cosines then sines) of ``positions`` [B, T]."""
    half = dim // 2
    channel = torch.arange(half, device=positions.device, dtype=dtype)
    phase = positions.to(dtype)[..., None] / (max_period ** (channel / (half - 1)))  # [B, T, half]
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


# ----------------------------------------------------------------------------------------------------------
# Attention


@dataclass
class AttentionState(StreamState):
    """Ring KV cache: ``keys``/``values`` [B, Hkv, C, D] and the absolute position held in each slot."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    slot_positions: torch.Tensor | None = None  # [B, C] long, -1 = empty
    cross_keys: torch.Tensor | None = None  # [B, H, S, D], cross-attention only
    cross_values: torch.Tensor | None = None
    # While every item sits at the same position (no partial reset, no paused item), that position. Writes
    # then need no per-item indexing, and ``slot_positions`` is left stale: it follows from this number.
    shared_position: int | None = 0
    # Masks of shared-position chunks, by (steps in the chunk, end position folded once the ring is full):
    # they repeat with the ring's period, so each is built once per session.
    shared_masks: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def shared_slot_positions(self) -> torch.Tensor:
        """[C] positions held by the slots while items share ``shared_position`` (-1 = empty)."""
        assert self.shared_position is not None and self.slot_positions is not None
        end = self.shared_position
        slots = torch.arange(self.slot_positions.shape[1], device=self.slot_positions.device)
        latest = end - 1 - (end - 1 - slots) % slots.numel()  # last position written to each slot
        return torch.where(latest >= 0, latest, -1)

    def leave_shared(self) -> None:
        """Switch to per-item bookkeeping (items are about to diverge)."""
        if self.shared_position is not None and self.slot_positions is not None:
            self.slot_positions.copy_(self.shared_slot_positions().expand_as(self.slot_positions))
        self.shared_position = None

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        if bool(reset_mask.all()):
            self.shared_position = 0
            return
        self.leave_shared()
        if self.slot_positions is not None:
            self.slot_positions[reset_mask] = -1

    def reset_all(self) -> None:
        self.exec_mask.fill_(True)
        self.all_executing = True
        self.shared_position = 0


class StreamingAttention(StreamingModule[AttentionState]):
    """Multi-head attention, causal with a bounded context when self-attending, or cross-attention."""

    def __init__(self, config: TransformerConfig, cross_attention: bool = False):
        super().__init__()
        self.embed_dim = config.d_model
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads
        self.cross_attention = cross_attention
        self.causal = config.causal and not cross_attention
        self.context = None if cross_attention else config.context
        self.use_rope = config.positional_embedding == "rope" and not cross_attention
        self.max_period = config.max_period
        self.kv_repeat = 1 if cross_attention else config.kv_repeat
        self.num_kv_heads = self.num_heads // self.kv_repeat
        self.schedule = None if cross_attention else config.weights_per_step_schedule
        self.weights_per_step = 0 if cross_attention else config.weights_per_step
        self.max_chunk = config.max_chunk
        num_sets = 1 if cross_attention else config.num_weight_sets
        projected_dim = self.embed_dim + 2 * self.num_kv_heads * self.head_dim
        self.in_projs = nn.ModuleList(
            [Linear(self.embed_dim, projected_dim, bias=False) for _ in range(num_sets)])
        self.out_projs = nn.ModuleList(
            [Linear(self.embed_dim, self.embed_dim, bias=False) for _ in range(num_sets)])
        self._register_load_state_dict_pre_hook(self._split_fused_projections, with_module=True)

    @staticmethod
    def _split_fused_projections(module: StreamingAttention, state_dict: dict, prefix: str, *_: tp.Any) -> None:
        """Accept the fused ``in_proj_weight`` / ``out_proj.weight`` layout of older checkpoints."""
        fused_names = {"in_proj_weight": "in_projs", "in_proj.weight": "in_projs", "out_proj.weight": "out_projs"}
        for fused, target in fused_names.items():
            weight = state_dict.pop(prefix + fused, None)
            if weight is None:
                continue
            sets = len(getattr(module, target))
            for index, part in enumerate(weight.view(sets, -1, weight.shape[-1])):
                state_dict[f"{prefix}{target}.{index}.weight"] = part

    def init_state(self, batch_size: int) -> AttentionState:
        weight = self.in_projs[0].weight
        state = AttentionState(batch_size, weight.device)
        if self.cross_attention:
            return state
        span = self.context if self.context is not None else self.weights_per_step
        if not span:
            raise RuntimeError("streaming self-attention needs a context or weights_per_step")
        # One extra slot per extra step of a chunk keeps every key a chunk's queries need.
        capacity = span + self.max_chunk - 1
        shape = (batch_size, self.num_kv_heads, capacity, self.head_dim)
        state.keys = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        state.values = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        state.slot_positions = torch.full((batch_size, capacity), -1, device=weight.device, dtype=torch.long)
        return state

    def _project(self, projections: nn.ModuleList, x: torch.Tensor, first_step: int) -> torch.Tensor:
        """Apply the projection of each step (weights per step) or the single shared one."""
        if len(projections) == 1:
            return projections[0](x)
        if x.shape[1] == 1:
            return projections[self.schedule[first_step] if self.schedule is not None else first_step](x)
        outputs = []
        for t in range(x.shape[1]):
            step = first_step + t
            index = self.schedule[step] if self.schedule is not None else step
            outputs.append(projections[index](x[:, t:t + 1]))
        return torch.cat(outputs, dim=1)

    def _cross_keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys_values = source @ self.in_projs[0].weight_t[:, self.embed_dim:]  # [B, S, 2 * dim]
        B, S, _ = keys_values.shape
        keys_values = keys_values.view(B, S, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return keys_values[0], keys_values[1]  # [B, H, S, D] each

    def forward(self, x: torch.Tensor, positions: torch.Tensor, first_step: int, rope: torch.Tensor | None,
                cross_source: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, T, dim] at absolute ``positions`` [B, T] (rotated by ``rope`` [B, T, D/2] if RoPE is used);
        ``first_step`` indexes per-step weights."""
        B, T, _ = x.shape
        if self.cross_attention:
            return self._cross_forward(x, cross_source)
        projected = self._project(self.in_projs, x, first_step)  # [B, T, dim + 2 * kv_dim]
        if self.kv_repeat == 1:
            qkv = projected.view(B, T, 3, self.num_heads, self.head_dim)
            if self.use_rope:
                assert rope is not None
                q, k = apply_rope(qkv[:, :, :2], rope).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, T, D]
                v = qkv[:, :, 2].transpose(1, 2)
            else:
                q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, T, D] each
        else:
            kv_dim = self.num_kv_heads * self.head_dim
            q, k, v = projected.split([self.embed_dim, kv_dim, kv_dim], dim=-1)
            q = q.view(B, T, self.num_heads, self.head_dim)
            k = k.view(B, T, self.num_kv_heads, self.head_dim)
            if self.use_rope:
                assert rope is not None
                q, k = apply_rope(q, rope), apply_rope(k, rope)
            q, k = q.transpose(1, 2), k.transpose(1, 2)  # [B, H, T, D], [B, Hkv, T, D]
            v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)

        if self.state is None:
            mask = self._offline_mask(T, x.device)
        else:
            k, v, mask = self._append_to_cache(k, v, positions)
        if self.kv_repeat > 1:
            k = k.repeat_interleave(self.kv_repeat, dim=1)  # [B, H, S, D]
            v = v.repeat_interleave(self.kv_repeat, dim=1)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, T, D]
        attended = attended.transpose(1, 2).reshape(B, T, self.embed_dim)
        return self._project(self.out_projs, attended, first_step)

    def _offline_mask(self, T: int, device: torch.device) -> torch.Tensor | None:
        if not self.causal:
            return None
        query = torch.arange(T, device=device)[:, None]
        key = torch.arange(T, device=device)[None, :]
        allowed = key <= query  # [T, T]
        if self.context is not None:
            allowed &= (query - key) < self.context
        return allowed

    def _append_to_cache(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Write the new keys/values into the ring; return the whole ring and the attention mask."""
        state = self.state
        assert state is not None and state.keys is not None and state.values is not None
        assert state.slot_positions is not None
        B, _, T, D = k.shape
        if T > self.max_chunk:
            raise ValueError(f"a streaming call carries {T} steps, more than max_chunk={self.max_chunk}")
        capacity = state.keys.shape[2]
        if state.shared_position is not None and state.all_executing:
            return self._append_shared(k, v, positions)
        state.leave_shared()
        slots = positions % capacity  # [B, T]
        writing = state.exec_mask
        if not bool(writing.all()):
            # Items that are not executing keep their cache: write their old contents back.
            slot_index = slots[:, None, :, None].expand(B, self.num_kv_heads, T, D)
            keep = ~writing[:, None, None, None]
            k = torch.where(keep, state.keys.gather(2, slot_index), k)
            v = torch.where(keep, state.values.gather(2, slot_index), v)
            new_slot_positions = torch.where(~writing[:, None], state.slot_positions.gather(1, slots), positions)
        else:
            new_slot_positions = positions
        if T == 1:
            batch_index = torch.arange(B, device=k.device)
            state.keys[batch_index, :, slots[:, 0]] = k[:, :, 0]
            state.values[batch_index, :, slots[:, 0]] = v[:, :, 0]
        else:
            slot_index = slots[:, None, :, None].expand(B, self.num_kv_heads, T, D)
            state.keys.scatter_(2, slot_index, k)
            state.values.scatter_(2, slot_index, v)
        state.slot_positions.scatter_(1, slots, new_slot_positions)

        key_positions = state.slot_positions[:, None, None, :]  # [B, 1, 1, C]
        query_positions = positions[:, None, :, None]  # [B, 1, T, 1]
        mask = (key_positions >= 0) & (key_positions <= query_positions)
        if self.context is not None:
            mask &= (query_positions - key_positions) < self.context
        return state.keys, state.values, mask

    def _append_shared(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``_append_to_cache`` when all items share one position: plain slicing, and often no mask."""
        state = self.state
        assert state is not None and state.keys is not None and state.values is not None
        assert state.shared_position is not None
        T = k.shape[2]
        capacity = state.keys.shape[2]
        start = state.shared_position
        end = start + T
        first_slot = start % capacity
        if first_slot + T <= capacity:
            state.keys[:, :, first_slot:first_slot + T] = k
            state.values[:, :, first_slot:first_slot + T] = v
        else:
            slots = torch.arange(start, end, device=k.device) % capacity  # [T]
            state.keys.index_copy_(2, slots, k)
            state.values.index_copy_(2, slots, v)
        state.shared_position = end
        filled = min(end, capacity)
        if T == 1 and (self.context is None or filled <= self.context):
            # One query sees every filled slot: nothing to mask.
            return state.keys[:, :, :filled], state.values[:, :, :filled], None
        folded_end = end if end < capacity else capacity + end % capacity
        mask = state.shared_masks.get((T, folded_end))
        if mask is None:
            key_positions = state.shared_slot_positions()  # [C]
            query_positions = positions[:1, None, :, None]  # [1, 1, T, 1]
            mask = (key_positions >= 0) & (key_positions <= query_positions)  # [1, 1, T, C]
            if self.context is not None:
                mask &= (query_positions - key_positions) < self.context
            state.shared_masks[(T, folded_end)] = mask
        return state.keys, state.values, mask

    def _cross_forward(self, x: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        state = self.state
        if state is not None and state.cross_keys is not None:
            keys, values = state.cross_keys, state.cross_values
        else:
            if source is None:
                raise ValueError("cross-attention needs a conditioning source")
            keys, values = self._cross_keys_values(source)
            if state is not None:
                state.cross_keys, state.cross_values = keys, values
        q = x @ self.in_projs[0].weight_t[:, :self.embed_dim]  # [B, T, dim]
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        attended = F.scaled_dot_product_attention(q, keys, values)  # [B, H, T, D]
        return self.out_projs[0](attended.transpose(1, 2).reshape(B, T, self.embed_dim))


# ----------------------------------------------------------------------------------------------------------
# Layers and the stack


class TransformerLayer(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, feed-forward, each with a residual."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        dim = config.d_model
        self.norm1 = make_norm(config.norm, dim)
        self.self_attn = StreamingAttention(config)
        self.norm2 = make_norm(config.norm, dim)
        self.schedule = config.weights_per_step_schedule
        feedforward_sizes = config.dim_feedforward
        if config.gating == "none":
            if config.weights_per_step or isinstance(feedforward_sizes, list):
                raise ValueError("weights per step need a gated feed-forward")
            self.linear1 = Linear(dim, feedforward_sizes, bias=False)
            self.linear2 = Linear(feedforward_sizes, dim, bias=False)
            self.gating: nn.Module | None = None
        elif config.weights_per_step:
            sets = config.num_weight_sets
            if isinstance(feedforward_sizes, int):
                feedforward_sizes = [feedforward_sizes] * sets
            self.gating = nn.ModuleList([GatedFeedForward(dim, size, config.gating) for size in feedforward_sizes])
        else:
            assert isinstance(feedforward_sizes, int)
            self.gating = GatedFeedForward(dim, feedforward_sizes, config.gating)
        self.cross_attention: StreamingAttention | None = None
        if config.cross_attention:
            self.cross_attention = StreamingAttention(config, cross_attention=True)
            self.norm_cross = nn.LayerNorm(dim, eps=1e-5)
        self.layer_scale_1: LayerScale | None = None
        self.layer_scale_2: LayerScale | None = None
        self.layer_scale_cross: LayerScale | None = None
        if config.layer_scale is not None:
            self.layer_scale_1 = LayerScale(dim, config.layer_scale)
            self.layer_scale_2 = LayerScale(dim, config.layer_scale)
            if config.cross_attention:
                self.layer_scale_cross = LayerScale(dim, config.layer_scale)

    def _feedforward(self, x: torch.Tensor, first_step: int) -> torch.Tensor:
        if self.gating is None:
            return self.linear2(F.gelu(self.linear1(x)))
        if isinstance(self.gating, nn.ModuleList):
            if x.shape[1] == 1:
                return self.gating[self.schedule[first_step] if self.schedule is not None else first_step](x)
            outputs = []
            for t in range(x.shape[1]):
                step = first_step + t
                index = self.schedule[step] if self.schedule is not None else step
                outputs.append(self.gating[index](x[:, t:t + 1]))
            return torch.cat(outputs, dim=1)
        return self.gating(x)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, first_step: int, rope: torch.Tensor | None,
                cross_source: torch.Tensor | None = None) -> torch.Tensor:
        update = self.self_attn(self.norm1(x), positions, first_step, rope)
        x = x + (update if self.layer_scale_1 is None else self.layer_scale_1(update))
        if self.cross_attention is not None:
            update = self.cross_attention(self.norm_cross(x), positions, 0, None, cross_source)
            x = x + (update if self.layer_scale_cross is None else self.layer_scale_cross(update))
        update = self._feedforward(self.norm2(x), first_step)
        return x + (update if self.layer_scale_2 is None else self.layer_scale_2(update))


@dataclass
class TransformerState(StreamState):
    """Next absolute position of each batch item, and the step count for per-step weights."""

    offsets: torch.Tensor = field(default=None)  # type: ignore[assignment]  # [B] long
    steps: int = 0

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        self.offsets[reset_mask] = 0
        self.steps = 0


class StreamingTransformer(StreamingModule[TransformerState]):
    """A stack of ``TransformerLayer`` over [B, T, dim] that can run offline or streaming."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.d_model % config.num_heads:
            raise ValueError("d_model must be a multiple of num_heads")
        self.config = config
        self.layers = nn.ModuleList([TransformerLayer(config) for _ in range(config.num_layers)])

    def init_state(self, batch_size: int) -> TransformerState:
        device = next(self.parameters()).device
        offsets = torch.zeros(batch_size, dtype=torch.long, device=device)
        return TransformerState(batch_size, device, offsets=offsets)

    def forward(self, x: torch.Tensor, cross_source: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        state = self.state
        steps_in_chunk = torch.arange(T, device=x.device)
        if state is None:
            positions = steps_in_chunk[None].expand(B, T)  # [B, T]
            first_step = 0
        else:
            positions = state.offsets[:, None] + steps_in_chunk  # [B, T]
            first_step = state.steps
        rope = None
        if self.config.positional_embedding == "rope":
            rope = rope_rotation(positions, C // self.config.num_heads, self.config.max_period)  # [B, T, D/2]
        elif self.config.positional_embedding == "sin":
            embedding = sin_embedding(positions, C, self.config.max_period, x.dtype)  # [B, T, C]
            x = x + self.config.positional_scale * embedding
        for layer in self.layers:
            x = layer(x, positions, first_step, rope, cross_source)
        if state is not None:
            if state.all_executing:
                state.offsets += T
            else:
                state.offsets += state.exec_mask.long() * T
            state.steps += T
        return x


class ProjectedTransformer(StreamingModule[StreamState]):
    """A transformer with optional linear maps in and out; ``conv_layout`` takes and gives [B, C, T]."""

    def __init__(self, config: TransformerConfig, input_dim: int, output_dims: tp.Sequence[int],
                 conv_layout: bool = False):
        super().__init__()
        self.transformer = StreamingTransformer(config)
        self.conv_layout = conv_layout
        self.input_proj = Linear(input_dim, config.d_model, bias=False) if input_dim != config.d_model else None
        self.output_projs = nn.ModuleList([
            nn.Identity() if dim == config.d_model else Linear(config.d_model, dim, bias=False)
            for dim in output_dims
        ])

    def init_state(self, batch_size: int) -> StreamState:
        return StreamState(batch_size, next(self.parameters()).device)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.conv_layout:
            x = x.transpose(1, 2)  # [B, T, C]
        if self.input_proj is not None:
            x = self.input_proj(x)
        hidden = self.transformer(x)  # [B, T, d_model]
        outputs = [projection(hidden) for projection in self.output_projs]
        if self.conv_layout:
            outputs = [y.transpose(1, 2) for y in outputs]  # [B, C, T]
        return outputs
