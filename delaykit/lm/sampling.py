"""Token sampling: greedy, temperature, top-k and top-p, with an optional seeded generator."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick one token from logits."""

    temperature: float = 0.0  # 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens; 0 = no limit
    top_p: float = 0.0  # nucleus: smallest set with this much probability; 0 = off (takes precedence)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def _draw(probabilities: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of ``probabilities`` [N, V] by the exponential-race trick (no host sync)."""
    race = torch.empty_like(probabilities).exponential_(1.0, generator=generator)
    return (probabilities / race).argmax(dim=-1, keepdim=True)  # [N, 1]


def sample_token(logits: torch.Tensor, options: SamplingOptions,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``logits`` [..., V] -> token ids [...]."""
    if options.greedy:
        return logits.argmax(dim=-1)
    shape = logits.shape[:-1]
    probabilities = torch.softmax(logits.float().reshape(-1, logits.shape[-1]) / options.temperature, dim=-1)
    if options.top_p > 0.0:
        sorted_probs, order = probabilities.sort(dim=-1, descending=True)  # [N, V]
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > options.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        sorted_probs = sorted_probs / sorted_probs.sum(dim=-1, keepdim=True)
        tokens = order.gather(-1, _draw(sorted_probs, generator))
    elif options.top_k > 0:
        top_probs, top_ids = probabilities.topk(min(options.top_k, probabilities.shape[-1]), dim=-1)
        tokens = top_ids.gather(-1, _draw(top_probs, generator))
    else:
        tokens = _draw(probabilities, generator)
    return tokens.view(shape)
