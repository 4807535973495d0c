"""The multi-stream LM: a temporal transformer over frames and a depth transformer over each frame's codebooks.

Streams are rows of a token matrix [B, K, T]: row 0 is text, rows 1..dep_q are the audio codebooks the model
generates, the remaining rows are audio it is fed (the user's, in dialogue). Each row k is shifted right by
``delays[k]`` frames before the model sees it. At each frame the temporal transformer reads the sum of the
row embeddings and predicts the text token; the depth transformer then predicts the generated codebooks one
after the other, conditioned on the temporal output and on the token just chosen.

``LMConfig`` uses the keyword names of Kyutai's ``config.json`` so published checkpoints load unchanged.
"""

from __future__ import annotations

import dataclasses
import typing as tp
from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoints import META_KEYS
from ..linear import Linear
from ..streaming import StreamingContainer
from ..transformer import StreamingTransformer, TransformerConfig, make_norm
from .conditioners import Condition, ConditionFuser, ConditionProvider, FuserConfig, build_conditioner
from .embeddings import ZERO_TOKEN, StreamEmbedding

# Keys of a Kyutai config.json that say nothing about the LM's shape: file names and uses (META_KEYS),
# plus deprecated or runtime-only options.
IGNORED_CONFIG_KEYS = (*META_KEYS, "lora", "lora_rank", "lora_scaling", "depformer_causal", "quantize")


@dataclass
class LMConfig:
    """Shape of the LM, with the field names of Kyutai's published configs."""

    delays: list[int] = field(default_factory=lambda: [0])
    n_q: int = 8  # audio streams the model reads (generated + fed)
    dep_q: int = 8  # audio streams the depth transformer generates (0: text only, as in ASR)
    card: int = 1024  # audio codebook size; id ``card`` is the initial token
    text_card: int = 32000  # text vocabulary; id ``text_card`` is the initial token
    text_card_out: int | None = None
    demux_second_text_stream: bool = False
    dim: int = 128
    num_heads: int = 8
    num_layers: int = 8
    hidden_scale: float = 4
    norm: str = "layer_norm"
    norm_emb: bool = False
    bias_proj: bool = False
    gating: str = "none"
    positional_embedding: str = "rope"
    max_period: float = 10_000
    layer_scale: float | None = None
    context: int | None = None
    causal: bool = True
    kv_repeat: int = 1
    cross_attention: bool = False
    depformer_dim: int = 256
    depformer_dim_feedforward: int | list[int] | None = None
    depformer_num_heads: int | None = None
    depformer_num_layers: int | None = None
    depformer_multi_linear: bool = False
    depformer_weights_per_step: bool = False
    depformer_weights_per_step_schedule: list[int] | None = None
    depformer_low_rank_embeddings: int | None = None
    depformer_pos_emb: str = "sin"
    depformer_norm: str | None = None
    depformer_gating: str | None = None
    depformer_layer_scale: float | None = None
    depformer_max_period: float | None = None
    depformer_context: int | None = None  # accepted for compatibility; the depth span is always dep_q
    depformer_kv_repeat: int | None = None
    existing_text_padding_id: int = 3
    existing_text_end_padding_id: int = 0
    extra_heads_num_heads: int = 0
    extra_heads_dim: int = 6
    conditioners: dict | None = None
    fuser: dict | None = None

    @classmethod
    def from_kyutai(cls, config: dict) -> LMConfig:
        """Build from a config.json dict, ignoring the checkpoint's meta keys; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        options = {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}
        if "demux_second_stream" in options:
            options["demux_second_text_stream"] = options.pop("demux_second_stream")
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown LM config keys: {unknown}")
        return cls(**options)

    def to_kyutai(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def num_streams(self) -> int:
        return self.n_q + 1

    def temporal_config(self) -> TransformerConfig:
        return TransformerConfig(
            d_model=self.dim, num_heads=self.num_heads, num_layers=self.num_layers,
            dim_feedforward=int(self.hidden_scale * self.dim), causal=self.causal, context=self.context,
            positional_embedding=self.positional_embedding, max_period=self.max_period, norm=self.norm,
            gating=self.gating, layer_scale=self.layer_scale, kv_repeat=self.kv_repeat,
            cross_attention=self.cross_attention)

    def depth_config(self) -> TransformerConfig:
        def pick(value: tp.Any, default: tp.Any) -> tp.Any:
            return default if value is None else value

        feedforward = pick(self.depformer_dim_feedforward, int(self.hidden_scale * self.depformer_dim))
        return TransformerConfig(
            d_model=self.depformer_dim, num_heads=pick(self.depformer_num_heads, self.num_heads),
            num_layers=pick(self.depformer_num_layers, self.num_layers), dim_feedforward=feedforward,
            causal=self.causal, context=None if self.depformer_weights_per_step else self.dep_q,
            positional_embedding=self.depformer_pos_emb,
            max_period=pick(self.depformer_max_period, self.max_period), norm=self.norm,
            gating=pick(self.depformer_gating, self.gating),
            layer_scale=self.depformer_layer_scale,
            kv_repeat=pick(self.depformer_kv_repeat, self.kv_repeat),
            weights_per_step=self.dep_q if self.depformer_weights_per_step else 0,
            weights_per_step_schedule=self.depformer_weights_per_step_schedule)


@dataclass
class LMOutput:
    """Training-time outputs, aligned with the (undelayed) input codes; invalid positions are NaN."""

    logits: torch.Tensor  # [B, dep_q, T, card]
    mask: torch.Tensor  # [B, dep_q, T] bool
    text_logits: torch.Tensor  # [B, 1, T, text_card_out]
    text_mask: torch.Tensor  # [B, 1, T] bool
    hidden: torch.Tensor | None = None  # [B, T, dim] temporal output (what the extra heads read)


def delay_streams(codes: torch.Tensor, delays: tp.Sequence[int], fill: torch.Tensor) -> torch.Tensor:
    """Shift row k of ``codes`` [B, K, T] right by ``delays[k]``, filling with ``fill`` [B, K, 1]."""
    rows = []
    for k, delay in enumerate(delays):
        row = codes[:, k]  # [B, T]
        if delay > 0:
            row = torch.cat([fill[:, k].expand(-1, delay), row[:, :-delay]], dim=1)
        rows.append(row)
    return torch.stack(rows, dim=1)


def undelay_streams(values: torch.Tensor, delays: tp.Sequence[int], fill: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``delay_streams`` on [B, K, T, ...]; the last ``delays[k]`` steps become ``fill``."""
    B, K, T = values.shape[:3]
    valid = torch.ones(B, K, T, dtype=torch.bool, device=values.device)
    rows = []
    for k, delay in enumerate(delays):
        row = values[:, k]
        if delay > 0:
            row = torch.cat([row[:, delay:], torch.full_like(row[:, :delay], fill)], dim=1)
            valid[:, k, T - delay:] = False
        rows.append(row)
    if not rows:  # no generated audio (an ASR model): nothing to move
        return values, valid
    return torch.stack(rows, dim=1), valid


class LMModel(StreamingContainer):
    """Embeddings, temporal transformer, text head, depth transformer and audio heads."""

    def __init__(self, config: LMConfig):
        super().__init__()
        if len(config.delays) != config.num_streams:
            raise ValueError(f"expected {config.num_streams} delays, got {len(config.delays)}")
        self.config = config
        dim = config.dim
        self.emb = nn.ModuleList([StreamEmbedding(config.card + 1, dim, norm=config.norm_emb)
                                  for _ in range(config.n_q)])
        self.text_emb = StreamEmbedding(config.text_card + 1, dim, norm=config.norm_emb,
                                        demux_second_stream=config.demux_second_text_stream)
        self.text_linear = Linear(dim, config.text_card_out or config.text_card, bias=config.bias_proj)
        self.transformer = StreamingTransformer(config.temporal_config())
        self.out_norm = make_norm(config.norm, dim)
        depth_dim = config.depformer_dim
        inputs = 1
        if config.depformer_multi_linear:
            schedule = config.depformer_weights_per_step_schedule
            inputs = max(schedule) + 1 if schedule else config.dep_q
        self.depformer_in = nn.ModuleList([Linear(dim, depth_dim, bias=False) for _ in range(inputs)])
        self.depformer: StreamingTransformer | None = None
        if config.dep_q > 0:
            low_rank = config.depformer_low_rank_embeddings
            self.depformer_emb = nn.ModuleList([
                StreamEmbedding(config.card + 1, depth_dim, norm=config.norm_emb, low_rank=low_rank)
                for _ in range(config.dep_q - 1)])  # the last codebook is never a depth input
            self.depformer_text_emb = StreamEmbedding(
                config.text_card + 1, depth_dim, norm=config.norm_emb, low_rank=low_rank,
                demux_second_stream=config.demux_second_text_stream)
            self.depformer_norms = nn.ModuleList([
                nn.Identity() if config.depformer_norm is None else make_norm(config.depformer_norm, depth_dim)
                for _ in range(config.dep_q)])
            self.depformer = StreamingTransformer(config.depth_config())
            self.depformer.detached = True  # it streams over codebooks, within one frame
        self.extra_heads = nn.ModuleList([Linear(dim, config.extra_heads_dim, bias=False)
                                          for _ in range(config.extra_heads_num_heads)])
        self.linears = nn.ModuleList([Linear(depth_dim, config.card, bias=config.bias_proj)
                                      for _ in range(config.dep_q)])
        self.condition_provider: ConditionProvider | None = None
        self.fuser: ConditionFuser | None = None
        if config.conditioners:
            self.condition_provider = ConditionProvider({
                name: build_conditioner(entry, dim) for name, entry in config.conditioners.items()})
        if config.fuser is not None:
            self.fuser = ConditionFuser(FuserConfig(**config.fuser))

    # -- token conventions -------------------------------------------------------------------------------

    @property
    def delays(self) -> list[int]:
        return self.config.delays

    @property
    def dep_q(self) -> int:
        return self.config.dep_q

    @property
    def num_streams(self) -> int:
        return self.config.num_streams

    @property
    def initial_token_id(self) -> int:
        return self.config.card

    @property
    def text_initial_token_id(self) -> int:
        return self.config.text_card

    def initial_tokens(self, batch_size: int) -> torch.Tensor:
        """Tokens fed before any real one: [B, K, 1]."""
        device = self.text_linear.weight.device
        tokens = torch.full((batch_size, self.num_streams, 1), self.initial_token_id, device=device)
        tokens[:, 0] = self.text_initial_token_id
        return tokens

    # -- pieces shared by training and generation --------------------------------------------------------

    def condition_inputs(self, conditions: dict[str, Condition] | None
                         ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(sum [B, 1, dim], cross-attention source [B, S, dim]) from provided conditions."""
        if conditions is None or self.fuser is None:
            return None, None
        return self.fuser.summed(conditions), self.fuser.cross_source(conditions)

    def forward_temporal(self, tokens: torch.Tensor, condition_sum: torch.Tensor | None = None,
                         cross_source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` [B, K, S] (already delayed) -> (hidden [B, S, dim], text logits [B, 1, S, V])."""
        x = None
        for k, embedding in enumerate(self.emb):
            audio = embedding(tokens[:, k + 1])  # [B, S, dim]
            x = audio if x is None else x + audio
        text = self.text_emb(tokens[:, 0])  # [B, S, dim]
        x = text if x is None else x + text
        if condition_sum is not None:
            x = x + condition_sum.to(x)
        if cross_source is not None:
            cross_source = cross_source.to(x)
        hidden = self.out_norm(self.transformer(x, cross_source))  # [B, S, dim]
        return hidden, self.text_linear(hidden)[:, None]

    def depth_input(self, codebook: int, previous_token: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Depth-transformer input for ``codebook``: projected temporal ``hidden`` [..., dim] plus the
        embedding of the token before it (the text token for codebook 0) -> [..., depth_dim]."""
        if len(self.depformer_in) == 1:
            projection = self.depformer_in[0]
        else:
            schedule = self.config.depformer_weights_per_step_schedule
            projection = self.depformer_in[schedule[codebook] if schedule else codebook]
        if codebook == 0:
            token_embedding = self.depformer_text_emb(previous_token)
        else:
            token_embedding = self.depformer_emb[codebook - 1](previous_token)
        return projection(hidden) + token_embedding

    def depth_logits(self, codebook: int, depth_hidden: torch.Tensor) -> torch.Tensor:
        return self.linears[codebook](self.depformer_norms[codebook](depth_hidden))

    # -- training ----------------------------------------------------------------------------------------

    def forward(self, codes: torch.Tensor, conditions: dict[str, Condition] | None = None,
                input_codes: torch.Tensor | None = None, frame_condition: torch.Tensor | None = None) -> LMOutput:
        """Teacher-forced logits for ``codes`` [B, K, T] (undelayed); logits[t] predicts codes[t].
        ``input_codes`` (same shape), when given, is what the temporal transformer reads instead of ``codes``
        (e.g. a text history with noise); the targets stay ``codes``. ``frame_condition`` [B, T, dim], when
        given, is the summed condition of each frame (it replaces the summed part of ``conditions``)."""
        B, K, T = codes.shape
        if K != self.num_streams:
            raise ValueError(f"expected {self.num_streams} streams, got {K}")
        initial = self.initial_tokens(B)  # [B, K, 1]
        delayed = torch.cat([initial, delay_streams(codes, self.delays, initial)], dim=2)  # [B, K, T+1]
        read = delayed
        if input_codes is not None:
            read = torch.cat([initial, delay_streams(input_codes, self.delays, initial)], dim=2)  # [B, K, T+1]
        condition_sum, cross_source = self.condition_inputs(conditions)
        if frame_condition is not None:
            condition_sum = frame_condition  # [B, T, dim]: step t reads the condition of the frame it predicts
        hidden, text_logits = self.forward_temporal(read[:, :, :-1], condition_sum, cross_source)
        targets = delayed[:, :, 1:]  # [B, K, T]
        if self.depformer is not None:
            logits = self._depth_teacher_forced(targets, hidden)  # [B, dep_q, T, card]
        else:
            logits = hidden.new_zeros(B, 0, T, self.config.card)
        logits, mask = undelay_streams(logits, self.delays[1:1 + self.dep_q], float("nan"))
        mask &= codes[:, 1:1 + self.dep_q] != ZERO_TOKEN
        text_logits, text_mask = undelay_streams(text_logits, self.delays[:1], float("nan"))
        text_mask &= codes[:, :1] != ZERO_TOKEN
        return LMOutput(logits, mask, text_logits, text_mask, hidden)

    def _depth_teacher_forced(self, targets: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        assert self.depformer is not None
        B, _, T = targets.shape
        inputs = [self.depth_input(q, targets[:, q], hidden) for q in range(self.dep_q)]  # [B, T, D] each
        depth_in = torch.stack(inputs, dim=2).reshape(B * T, self.dep_q, -1)  # [B*T, dep_q, D]
        depth_out = self.depformer(depth_in)  # [B*T, dep_q, D]
        logits = [self.depth_logits(q, depth_out[:, q]).view(B, T, -1) for q in range(self.dep_q)]
        return torch.stack(logits, dim=1)  # [B, dep_q, T, card]
