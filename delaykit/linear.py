"""A drop-in ``nn.Linear`` that stores its weight transposed, for fast one-frame steps on CPU.

Streaming runs every projection on a single row (one frame, one codebook). For such a ``[1, in]`` input,
multiplying by a row-major ``[in, out]`` matrix runs up to 2-3x faster on CPU than ``F.linear`` with the usual
``[out, in]`` weight, because the reduction then streams through memory in order. The weight lives in the
parameter ``weight_t`` [in, out]; the state dict still holds ``weight`` [out, in] under the usual key, so
checkpoints (Kyutai's included) load and save exactly as with ``nn.Linear``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Linear(nn.Module):
    """``y = x @ weight.T + bias`` with ``weight`` [out, in] exposed as a view of ``weight_t`` [in, out]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default initialisation
        self.weight_t = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The weight in ``nn.Linear``'s layout [out, in] (a view)."""
        return self.weight_t.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight_t  # [..., out]
        return y if self.bias is None else y + self.bias

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        weight = self.weight_t if keep_vars else self.weight_t.detach()
        destination[prefix + "weight"] = weight.t()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        weight = state_dict.pop(prefix + "weight", None)
        if weight is not None:
            state_dict[prefix + "weight_t"] = weight.t().contiguous()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if weight is not None:  # leave the caller's dict as it was, for strict key checks and reuse
            state_dict[prefix + "weight"] = state_dict.pop(prefix + "weight_t").t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
