"""Causal 1-d convolutions that run offline or stream chunk by chunk with the same result.

``CausalConv1d`` pads only on the left, so output step ``t`` sees inputs up to ``t * stride + stride - 1``.
Offline it pads ``(kernel - 1) * dilation + 1 - stride`` samples (zeros, or copies of the first sample); while
streaming it keeps exactly that many trailing input samples as its state and glues them in front of the next
chunk. ``CausalConvTranspose1d`` drops the last ``kernel - stride`` output samples offline; while streaming
it holds them back (without bias) and adds them onto the start of the next chunk's output.

Both keep their torch layer one level down (``conv.conv.weight`` / ``convtr.convtr.weight``) so a Mimi
checkpoint loads as is. Weight normalisation is not supported: published weights are already folded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from delaykit.streaming import StreamingModule, StreamState

PAD_MODES = ("constant", "replicate")

# Below this many output rows (batch x steps), a conv runs as one im2col matmul: torch's conv kernels are
# several times slower on the few-step calls of per-frame streaming (e.g. 2 steps x 1024 channels).
MATMUL_MAX_ROWS = 64


def all_active(state: StreamState) -> bool:
    """True when every batch item executes, so state updates need no per-item select."""
    return bool(state.exec_mask.all())


def conv1d_matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, dilation: int
) -> torch.Tensor:
    """``F.conv1d`` (no padding, groups=1) as im2col + matmul. x: [B, C_in, L], weight: [C_out, C_in, K]."""
    c_out, c_in, kernel = weight.shape
    span = (kernel - 1) * dilation + 1
    windows = x.unfold(-1, span, stride)  # [B, C_in, T_out, span]
    if dilation > 1:
        windows = windows[..., ::dilation]  # [B, C_in, T_out, K]
    batch, _, steps, _ = windows.shape
    cols = windows.permute(0, 2, 1, 3).reshape(batch * steps, c_in * kernel)  # [B*T_out, C_in*K]
    flat_weight = weight.view(c_out, c_in * kernel).t()  # [C_in*K, C_out]
    y = cols @ flat_weight if bias is None else torch.addmm(bias, cols, flat_weight)  # [B*T_out, C_out]
    return y.view(batch, steps, c_out).transpose(1, 2)  # [B, C_out, T_out]


def conv_transpose1d_matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int
) -> torch.Tensor:
    """``F.conv_transpose1d`` (groups=1, kernel a multiple of stride) as matmul + overlap-add.

    x: [B, C_in, T], weight: [C_in, C_out, K] -> [B, C_out, (T - 1) * stride + K].
    """
    c_in, c_out, kernel = weight.shape
    batch, _, steps = x.shape
    pieces = kernel // stride
    rows = x.transpose(1, 2).reshape(batch * steps, c_in)  # [B*T, C_in]
    cols = rows @ weight.view(c_in, c_out * kernel)  # [B*T, C_out*K]
    cols = cols.view(batch, steps, c_out, pieces, stride).permute(0, 2, 3, 1, 4)  # [B, C_out, K/S, T, S]
    span = steps * stride
    y = x.new_zeros(batch, c_out, span + kernel - stride)  # [B, C_out, T*S + K - S]
    for j in range(pieces):
        y[..., j * stride : j * stride + span] += cols[:, :, j].reshape(batch, c_out, span)
    if bias is not None:
        y += bias[:, None]
    return y


class _ConvSlot(nn.Module):
    """Holds a torch conv under the attribute ``conv``; it exists only to mirror the checkpoint key layout."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv


class _ConvTrSlot(nn.Module):
    """Holds a torch transposed conv under the attribute ``convtr`` (checkpoint key layout)."""

    def __init__(self, convtr: nn.ConvTranspose1d) -> None:
        super().__init__()
        self.convtr = convtr


@dataclass
class ConvState(StreamState):
    """Left context of a causal conv: the last ``context`` input samples seen."""

    previous: torch.Tensor  # [B, C_in, context]
    first: torch.Tensor  # [B] bool, True until the item's first chunk (replicate padding only)

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        self.previous[reset_mask] = 0.0
        self.first[reset_mask] = True


class CausalConv1d(StreamingModule[ConvState]):
    """Causal ``Conv1d``; input ``[B, C_in, T]`` -> output ``[B, C_out, T // stride]``.

    Streaming chunks must have a length that is a positive multiple of ``stride``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.conv = _ConvSlot(
            nn.Conv1d(
                in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups, bias=bias
            )
        )
        self.in_channels = in_channels
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.pad_mode = pad_mode
        # Samples of left context each output needs beyond its own stride.
        self.context = (kernel_size - 1) * dilation + 1 - stride
        if self.context < 0:
            raise ValueError("stride larger than the dilated kernel is not supported")

    def init_state(self, batch_size: int) -> ConvState:
        weight = self.conv.conv.weight
        previous = torch.zeros(
            batch_size, self.in_channels, self.context, dtype=weight.dtype, device=weight.device
        )
        first = torch.ones(batch_size, dtype=torch.bool, device=weight.device)
        return ConvState(batch_size, weight.device, previous, first)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, context + T]
        layer = self.conv.conv
        rows = x.shape[0] * ((x.shape[-1] - self.context) // self.stride)  # batch x output steps
        if self.groups == 1 and rows <= MATMUL_MAX_ROWS:
            return conv1d_matmul(x, layer.weight, layer.bias, self.stride, self.dilation)
        return F.conv1d(x, layer.weight, layer.bias, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, T]
        state = self.state
        if state is None:
            if self.context:
                x = F.pad(x, (self.context, 0), mode=self.pad_mode)  # [B, C_in, context + T]
            return self._conv(x)  # [B, C_out, T // stride]
        if x.shape[-1] % self.stride:
            raise ValueError(
                f"streaming chunk of {x.shape[-1]} steps is not a multiple of stride {self.stride}"
            )
        if not self.context:
            return self._conv(x)
        full = all_active(state)
        previous = state.previous  # [B, C_in, context]
        if self.pad_mode == "replicate":
            start = state.first if full else state.first & state.exec_mask  # [B]
            if bool(start.any()):
                previous = torch.where(start[:, None, None], x[..., :1], previous)  # [B, C_in, context]
            if full:
                state.first.fill_(False)
            else:
                state.first.logical_and_(~state.exec_mask)
        x = torch.cat([previous, x], dim=-1)  # [B, C_in, context + T]
        y = self._conv(x)  # [B, C_out, T // stride]
        tail = x[..., -self.context :]  # [B, C_in, context]
        if full:
            state.previous = tail
        else:
            state.previous = torch.where(state.exec_mask[:, None, None], tail, state.previous)
        return y


@dataclass
class ConvTrState(StreamState):
    """Overlap of a causal transposed conv: output samples that later inputs still add onto (bias excluded)."""

    partial: torch.Tensor  # [B, C_out, kernel - stride]

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        self.partial[reset_mask] = 0.0


class CausalConvTranspose1d(StreamingModule[ConvTrState]):
    """Causal ``ConvTranspose1d``; input ``[B, C_in, T]`` -> output ``[B, C_out, T * stride]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError("kernel_size must be at least stride")
        self.convtr = _ConvTrSlot(
            nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)
        )
        self.out_channels = out_channels
        self.stride = stride
        self.groups = groups
        self.overlap = kernel_size - stride
        self.matmul_ok = groups == 1 and kernel_size % stride == 0

    def init_state(self, batch_size: int) -> ConvTrState:
        weight = self.convtr.convtr.weight
        partial = torch.zeros(
            batch_size, self.out_channels, self.overlap, dtype=weight.dtype, device=weight.device
        )
        return ConvTrState(batch_size, weight.device, partial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C_in, T]
        layer = self.convtr.convtr
        if self.matmul_ok and x.shape[0] * x.shape[-1] <= MATMUL_MAX_ROWS:
            y = conv_transpose1d_matmul(x, layer.weight, layer.bias, self.stride)  # [B, C_out, T*S + O]
        else:
            y = F.conv_transpose1d(
                x, layer.weight, layer.bias, self.stride, 0, 0, self.groups
            )  # [B, C_out, T*S + O]
        overlap = self.overlap
        if not overlap:
            return y
        length = y.shape[-1] - overlap
        state = self.state
        if state is None:
            return y[..., :length]  # [B, C_out, T * stride]
        y[..., :overlap] += state.partial
        tail = y[..., length:]  # [B, C_out, overlap]
        if layer.bias is not None:
            tail = tail - layer.bias[:, None]
        if all_active(state):
            state.partial = tail
        else:
            state.partial = torch.where(state.exec_mask[:, None, None], tail, state.partial)
        return y[..., :length]  # [B, C_out, T * stride]
