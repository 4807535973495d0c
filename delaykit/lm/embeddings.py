"""Token embeddings for the LM streams, with the special "zero" token that embeds to exactly 0."""

from __future__ import annotations

import torch
from torch import nn

from ..linear import Linear

ZERO_TOKEN = -1  # a stream slot with no input: contributes nothing to the sum of embeddings
UNGENERATED_TOKEN = -2  # a slot the model must generate (used in prompts for partial teacher forcing)


class StreamEmbedding(nn.Embedding):
    """An embedding table where ``ZERO_TOKEN`` gives a zero vector.

    Options follow the published checkpoints: ``norm`` adds a LayerNorm after the lookup, ``low_rank``
    looks up a narrower vector then maps it up with ``low_rank`` (a Linear), and ``demux_second_stream``
    reads each id as ``second * num_embeddings + first`` (two text streams in one) and sums ``out1(first)``
    and ``out2(second - 1)``, where a second part of -1 contributes nothing.
    """

    def __init__(self, num_embeddings: int, dim: int, norm: bool = False, low_rank: int | None = None,
                 demux_second_stream: bool = False):
        super().__init__(num_embeddings, low_rank or dim)
        self.norm = nn.LayerNorm(self.embedding_dim, eps=1e-5) if norm else None
        self.low_rank = Linear(low_rank, dim, bias=False) if low_rank is not None else None
        self.demux_second_stream = demux_second_stream
        if demux_second_stream:
            if norm:
                raise ValueError("a demuxed embedding has no norm")
            self.out1 = Linear(low_rank or dim, dim, bias=False)
            self.out2 = Linear(low_rank or dim, dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` [...] long -> [..., dim]."""
        is_zero = (tokens == ZERO_TOKEN)[..., None]
        tokens = tokens.clamp(min=0)
        if self.demux_second_stream:
            first = super().forward(tokens % self.num_embeddings)
            second_ids = tokens // self.num_embeddings - 1
            second = self.out2(super().forward(second_ids.clamp(min=0)))
            embedded = self.out1(first) + second.masked_fill((second_ids < 0)[..., None], 0.0)
            return embedded.masked_fill(is_zero, 0.0)
        embedded = super().forward(tokens)
        if self.norm is not None:
            embedded = self.norm(embedded)
        embedded = embedded.masked_fill(is_zero, 0.0)
        if self.low_rank is not None:
            embedded = self.low_rank(embedded)
        return embedded
