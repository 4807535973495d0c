"""Split residual vector quantizer of the Mimi codec, with EMA codebooks.

Latents ``[B, input_dimension, T]`` are quantized by two residual VQs that both read the same input: the
semantic one (``rvq_first``, usually 1 codebook, distilled from a speech model during training) and the
acoustic one (``rvq_rest``). Each has its own 1x1 input/output projections to and from the codebook width, and
their decoded outputs are summed. Codes ``[B, K, T]`` list the semantic codebook(s) first.

Codebooks are EMA k-means centroids stored as ``embedding_sum`` / ``cluster_usage`` buffers (plus an
``_initialized`` flag), under the same keys as Kyutai's checkpoints. Nearest-centroid search reproduces
``torch.cdist``'s arithmetic exactly, so codes match the reference bit for bit, while the codebook side of the
distance is cached between calls. Training (``module.train()``) adds k-means initialisation, EMA updates,
dead-code restarts from the batch, quantizer dropout, a commitment loss and the straight-through estimator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F

# torch.cdist switches from direct differences to the matmul expansion above this many vectors on either side.
_CDIST_MM_THRESHOLD = 25


@dataclass(frozen=True)
class QuantizerConfig:
    """Shape and training hyper-parameters of a split RVQ."""

    dimension: int = 256  # codebook vector width
    input_dimension: int = 512
    output_dimension: int = 512
    n_q: int = 32  # total codebooks (semantic + acoustic)
    n_q_semantic: int = 1
    bins: int = 2048
    decay: float = 0.99
    epsilon: float = 1e-5  # floor on cluster_usage when turning sums into centroids
    threshold_usage_ratio: float = 0.1  # dead if usage < ratio * uniform usage
    replaced_usage_ratio: float = 1.0  # usage given to a restarted code, relative to uniform usage
    check_unused_every: int = 5  # training steps between dead-code checks
    kmeans_iters: int = 50
    q_dropout: bool = False  # train with a random number of acoustic codebooks per batch
    dropout_seed: int = 1234

    @classmethod
    def mimi(cls) -> QuantizerConfig:
        """The published Mimi quantizer: 1 semantic + 31 acoustic codebooks of 2048 x 256."""
        return cls()

    @classmethod
    def small(cls) -> QuantizerConfig:
        return replace(cls(), dimension=64, input_dimension=128, output_dimension=128, n_q=8, bins=1024)

    @classmethod
    def tiny(cls) -> QuantizerConfig:
        return replace(cls(), dimension=8, input_dimension=16, output_dimension=16, n_q=4, bins=16)


@dataclass
class QuantizerOutput:
    """Result of a quantizer forward pass."""

    quantized: torch.Tensor  # [B, output_dimension, T]; gradients pass straight through in training
    codes: torch.Tensor  # [B, K, T] int64
    commitment_loss: torch.Tensor  # scalar, mean over the codebooks used (0 in eval mode)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    semantic: torch.Tensor | None = None  # [B, output_dimension, T]: the semantic codebooks' part of ``quantized``


def _version_key(*tensors: torch.Tensor) -> tuple[int, ...] | None:
    """Identity + in-place version of tensors, or None where versions are not tracked (inference tensors)."""
    try:
        return tuple(k for t in tensors for k in (t.data_ptr(), t._version))
    except RuntimeError:
        return None


def _sample_rows(samples: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` rows of ``samples`` [N, D], without repetition when there are enough."""
    n = samples.shape[0]
    if n >= count:
        index = torch.randperm(n, device=samples.device)[:count]
    else:
        index = torch.randint(0, n, (count,), device=samples.device)
    return samples[index]  # [count, D]


class EmaCodebook(nn.Module):
    """One codebook of ``bins`` centroids of width ``dim``, kept as EMA sums and counts."""

    def __init__(self, dim: int, bins: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.dim = dim
        self.bins = bins
        self.config = config
        self.register_buffer("_initialized", torch.zeros(1))
        self.register_buffer("cluster_usage", torch.ones(bins))
        self.register_buffer("embedding_sum", torch.zeros(bins, dim))
        self._steps_to_check = config.check_unused_every
        self._cache_key: tuple[int, ...] | None = None
        self._centroids: torch.Tensor | None = None
        self._augmented: torch.Tensor | None = None

    @property
    def initialized(self) -> bool:
        return bool(self._initialized.item())

    def _refresh(self) -> None:
        key = _version_key(self.embedding_sum, self.cluster_usage)
        if key is not None and key == self._cache_key and self._centroids is not None:
            return
        usage = self.cluster_usage.clamp(min=self.config.epsilon)  # [bins]
        centroids = self.embedding_sum / usage[:, None]  # [bins, dim]
        norms = centroids.pow(2).sum(-1, keepdim=True)  # [bins, 1]
        # Codebook side of cdist's expansion |x|^2 - 2 x.c + |c|^2 as one matmul operand.
        self._augmented = torch.cat([centroids, torch.ones_like(norms), norms], dim=-1)  # [bins, dim + 2]
        self._centroids = centroids
        self._cache_key = key

    @property
    def centroids(self) -> torch.Tensor:
        self._refresh()
        assert self._centroids is not None
        return self._centroids  # [bins, dim]

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest centroid (Euclidean) for each row of ``x`` [N, dim] -> [N]."""
        self._refresh()
        assert self._centroids is not None and self._augmented is not None
        if x.shape[0] <= _CDIST_MM_THRESHOLD and self.bins <= _CDIST_MM_THRESHOLD:
            return torch.cdist(x[None], self._centroids[None])[0].argmin(dim=-1)
        norms = x.pow(2).sum(-1, keepdim=True)  # [N, 1]
        augmented = torch.cat([x.mul(-2), norms, torch.ones_like(norms)], dim=-1)  # [N, dim + 2]
        dists = augmented[None].matmul(self._augmented[None].mT)[0]  # [N, bins], squared distances
        return dists.clamp_min_(0).sqrt_().argmin(dim=-1)  # [N]

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Centroids of ``codes`` [...] -> [..., dim]."""
        return F.embedding(codes, self.centroids)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._cache_key = None
        self._centroids = None
        super()._load_from_state_dict(*args, **kwargs)

    # ---- training ----

    @torch.no_grad()
    def kmeans_init(self, x: torch.Tensor) -> None:
        """Set the codebook to k-means centroids of ``x`` [N, dim] and mark it initialised."""
        means = _sample_rows(x, self.bins)  # [bins, dim]
        counts = torch.zeros(self.bins, dtype=x.dtype, device=x.device)
        for _ in range(self.config.kmeans_iters):
            assign = torch.cdist(x[None], means[None])[0].argmin(dim=-1)  # [N]
            counts = torch.bincount(assign, minlength=self.bins).to(x.dtype)  # [bins]
            sums = torch.zeros_like(means).index_add_(0, assign, x)  # [bins, dim]
            empty = counts == 0
            means = torch.where(
                empty[:, None], _sample_rows(x, self.bins), sums / counts.clamp(min=1)[:, None]
            )
        self.embedding_sum.copy_(means * counts[:, None])
        self.cluster_usage.copy_(counts)
        self._initialized.fill_(1.0)

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Restart dead codes (every few calls) then fold batch ``x`` [N, dim] with ``codes`` [N] into the EMA.

        Returns the fraction of codes restarted (0 on steps without a check).
        """
        restarted = x.new_zeros(())
        cfg = self.config
        if self.initialized:
            self._steps_to_check -= 1
            if self._steps_to_check <= 0:
                self._steps_to_check = cfg.check_unused_every
                uniform = self.cluster_usage.sum() / self.bins
                dead = self.cluster_usage < cfg.threshold_usage_ratio * uniform  # [bins]
                new_usage = cfg.replaced_usage_ratio * uniform
                fresh = _sample_rows(x, self.bins)  # [bins, dim]
                self.embedding_sum.copy_(torch.where(dead[:, None], new_usage * fresh, self.embedding_sum))
                self.cluster_usage.copy_(torch.where(dead, new_usage, self.cluster_usage))
                restarted = dead.to(x.dtype).mean()
        counts = torch.zeros_like(self.cluster_usage).index_add_(
            0, codes, torch.ones_like(codes, dtype=x.dtype)
        )
        sums = torch.zeros_like(self.embedding_sum).index_add_(0, codes, x)  # [bins, dim]
        self.cluster_usage.mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
        self.embedding_sum.mul_(cfg.decay).add_(sums, alpha=1 - cfg.decay)
        return restarted


class _CodebookSlot(nn.Module):
    """Holds a codebook as ``_codebook`` (checkpoint key layout ``layers.N._codebook.*``)."""

    def __init__(self, codebook: EmaCodebook) -> None:
        super().__init__()
        self._codebook = codebook


class _CodebookStack(nn.Module):
    """Holds the codebooks as ``layers`` (checkpoint key layout ``vq.layers.N``)."""

    def __init__(self, codebooks: list[EmaCodebook]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_CodebookSlot(cb) for cb in codebooks)


@dataclass
class _RvqPass:
    quantized: torch.Tensor  # [B, output_dimension, T]
    codes: torch.Tensor  # [B, K, T]
    loss: torch.Tensor  # scalar, mean over codebooks
    restarted: torch.Tensor  # scalar


class ResidualVQ(nn.Module):
    """Residual VQ with its own 1x1 projections: ``[B, D_in, T]`` <-> codes ``[B, n_q, T]`` <-> ``[B, D_out, T]``."""

    def __init__(self, n_q: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.n_q = n_q
        self.dimension = config.dimension
        self.input_proj = nn.Conv1d(config.input_dimension, config.dimension, 1, bias=False)
        self.output_proj = nn.Conv1d(config.dimension, config.output_dimension, 1, bias=False)
        self.vq = _CodebookStack([EmaCodebook(config.dimension, config.bins, config) for _ in range(n_q)])

    @property
    def codebooks(self) -> list[EmaCodebook]:
        return [slot._codebook for slot in self.vq.layers]  # type: ignore[union-attr]

    def _project_in(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D_in, T]
        z = F.conv1d(x, self.input_proj.weight)  # [B, D, T]
        return z.transpose(1, 2).reshape(-1, self.dimension)  # [B*T, D]

    def _project_out(self, q: torch.Tensor, batch: int) -> torch.Tensor:  # q: [B*T, D]
        q = q.view(batch, -1, self.dimension).transpose(1, 2)  # [B, D, T]
        return F.conv1d(q, self.output_proj.weight)  # [B, D_out, T]

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:  # x: [B, D_in, T]
        if x.shape[-1] == 0:
            return torch.empty(x.shape[0], n_q, 0, dtype=torch.long, device=x.device)
        residual = self._project_in(x)  # [B*T, D]
        codes = []
        for codebook in self.codebooks[:n_q]:
            index = codebook.nearest(residual)  # [B*T]
            residual = residual - codebook.lookup(index)  # [B*T, D]
            codes.append(index)
        return torch.stack(codes, dim=-1).view(x.shape[0], x.shape[-1], n_q).transpose(1, 2)  # [B, n_q, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # codes: [B, K, T]
        if codes.shape[-1] == 0:
            weight = self.output_proj.weight
            return weight.new_zeros(codes.shape[0], weight.shape[0], 0)
        quantized = None
        for k, codebook in enumerate(self.codebooks[: codes.shape[1]]):
            vectors = codebook.lookup(codes[:, k])  # [B, T, D]
            quantized = vectors if quantized is None else quantized + vectors
        assert quantized is not None, "decode needs at least one codebook"
        return self._project_out(quantized.reshape(-1, self.dimension), codes.shape[0])  # [B, D_out, T]

    def forward(self, x: torch.Tensor, n_q: int) -> _RvqPass:  # x: [B, D_in, T]
        """Quantize with the first ``n_q`` codebooks, updating them when training."""
        batch, _, length = x.shape
        flat = self._project_in(x)  # [B*T, D]
        residual = flat
        quantized = torch.zeros_like(flat)  # [B*T, D]
        codes, losses, restarted = [], [], []
        may_initialize = True
        for codebook in self.codebooks[:n_q]:
            target = residual.detach()  # [B*T, D]
            was_initialized = True
            if self.training:
                was_initialized = codebook.initialized
                # Only one codebook per batch runs k-means, so the next one never sees all-zero residuals.
                if may_initialize and not was_initialized:
                    codebook.kmeans_init(target)
            index = codebook.nearest(target)  # [B*T]
            vectors = codebook.lookup(index).detach()  # [B*T, D]
            if self.training:
                restarted.append(codebook.ema_update(target, index))
                losses.append(F.mse_loss(residual, vectors))
                may_initialize = was_initialized
            residual = residual - vectors
            quantized = quantized + vectors
            codes.append(index)
        if self.training:
            quantized = flat + (quantized - flat).detach()  # straight-through estimator
        out = self._project_out(quantized, batch)  # [B, D_out, T]
        code_tensor = torch.stack(codes, dim=-1).view(batch, length, n_q).transpose(1, 2)  # [B, n_q, T]
        zero = x.new_zeros(())
        loss = torch.stack(losses).mean() if losses else zero
        restart = torch.stack(restarted).mean() if restarted else zero
        return _RvqPass(out, code_tensor, loss, restart)


class SplitResidualVQ(nn.Module):
    """Semantic RVQ (``rvq_first``) + acoustic RVQ (``rvq_rest``) over the same input; outputs summed.

    ``encode(x [B, D_in, T]) -> codes [B, n_q, T]``, ``decode(codes [B, K, T]) -> [B, D_out, T]`` for any
    ``K <= total_codebooks``; ``forward(x, n_q=None) -> QuantizerOutput`` for training. With
    ``semantic_input`` the semantic RVQ reads it instead of ``x`` (a codec with a semantic encoder).
    """

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        if not 0 < config.n_q_semantic < config.n_q:
            raise ValueError("need 0 < n_q_semantic < n_q")
        self.config = config
        self.n_q_semantic = config.n_q_semantic
        self.rvq_first = ResidualVQ(config.n_q_semantic, config)
        self.rvq_rest = ResidualVQ(config.n_q - config.n_q_semantic, config)
        self.n_q = config.n_q  # codebooks used by default; lower it to encode fewer
        self._dropout_rng = random.Random(config.dropout_seed)

    @property
    def total_codebooks(self) -> int:
        return self.config.n_q

    @property
    def bins(self) -> int:
        return self.config.bins

    def _split(self, n_q: int | None) -> tuple[int, int]:
        n_q = self.n_q if n_q is None else n_q
        if not 1 <= n_q <= self.total_codebooks:
            raise ValueError(f"n_q must be in [1, {self.total_codebooks}], got {n_q}")
        first = min(n_q, self.n_q_semantic)
        return first, n_q - first

    def encode(self, x: torch.Tensor, n_q: int | None = None,
               semantic_input: torch.Tensor | None = None) -> torch.Tensor:  # x: [B, D_in, T]
        first, rest = self._split(n_q)
        codes = self.rvq_first.encode(x if semantic_input is None else semantic_input, first)  # [B, first, T]
        if rest:
            codes = torch.cat([codes, self.rvq_rest.encode(x, rest)], dim=1)  # [B, n_q, T]
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # codes: [B, K, T]
        self._split(codes.shape[1])
        out = self.rvq_first.decode(codes[:, : self.n_q_semantic])  # [B, D_out, T]
        if codes.shape[1] > self.n_q_semantic:
            out = out + self.rvq_rest.decode(codes[:, self.n_q_semantic :])  # [B, D_out, T]
        return out

    def forward(self, x: torch.Tensor, n_q: int | None = None,
                semantic_input: torch.Tensor | None = None) -> QuantizerOutput:  # x: [B, D_in, T]
        """Quantize ``x`` (the semantic codebooks quantize ``semantic_input`` instead when given). In training
        mode this updates the codebooks and, with ``q_dropout`` and no explicit ``n_q``, uses a random number
        (at least 1) of acoustic codebooks."""
        first, rest = self._split(n_q)
        if self.training and self.config.q_dropout and n_q is None and rest > 0:
            rest = self._dropout_rng.randint(1, rest)
        semantic = self.rvq_first(x if semantic_input is None else semantic_input, first)
        if rest == 0:
            return QuantizerOutput(
                semantic.quantized, semantic.codes, semantic.loss, {"restarted": semantic.restarted},
                semantic=semantic.quantized,
            )
        acoustic = self.rvq_rest(x, rest)
        total = first + rest
        # Per-codebook means weighted by how many codebooks each part used.
        loss = (semantic.loss * first + acoustic.loss * rest) / total
        restarted = (semantic.restarted * first + acoustic.restarted * rest) / total
        return QuantizerOutput(
            semantic.quantized + acoustic.quantized,  # [B, D_out, T]
            torch.cat([semantic.codes, acoustic.codes], dim=1),  # [B, n_q, T]
            loss,
            {"restarted": restarted},
            semantic=semantic.quantized,
        )
