"""LM training for every mode: one trainer, the mode's stream layout chosen by config.

``delaykit train lm --mode asr|tts|dialogue`` trains the multi-stream LM on a code corpus
(:mod:`delaykit.data.codes`). One step draws windows in the mode's layout (:mod:`delaykit.train.lm_data`) and
minimises::

    text_weight * CE(text)  +  CE(audio codebooks)  +  vad_weight * CE(end-of-speech heads)

where text PAD tokens weigh ``text_padding_weight`` (0.5 in moshi-finetune) and the first, semantic codebook
weighs ``first_codebook_weight`` times the others (moshi-finetune's multiplier), each loss a weighted mean
over its valid positions (the LM marks positions its delays leave undefined). Fine-tuning starts from any
checkpoint ``load_engine`` reads (``init_from``), a Kyutai one included, in full or with LoRA adapters
(``lora_rank``). ``export_lm`` writes a checkpoint
directory that ``delaykit.load`` runs in every command: config.json (with ``stt_config`` / ``tts_config``) +
model.safetensors + the codec the corpus was encoded with + the tokenizer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import sys
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from ..checkpoints import CODEC_FROM_KEY, CODEC_PATCH_FROM_KEY, resolve_checkpoint
from ..data.codes import CodeCorpus, PackConfig
from ..layout import MODE_OF_MODEL_TYPE
from ..lm.embeddings import ZERO_TOKEN
from ..lm.model import LMConfig, LMModel, LMOutput
from ..lm.sampling import SamplingOptions
from ..text import PAD_ID, TextTokenizer
from ..voice import VOICE_ATTRIBUTES, VoiceChoice, model_voices, utterance_values, voice_conditioners

SPECIAL_TOKENS = range(4)  # EPAD/unk 0, BOS 1, EOS 2, PAD 3 (delaykit.train.tokenizer)
from .distributed import (
    STRATEGIES,
    init_distributed,
    load_optimizer_state,
    load_whole_state_dict,
    optimizer_state,
    whole,
    whole_state_dict,
    wrap_for_ranks,
)
from .lm_data import Batch, StreamBatcher, StreamSpec
from .loop import CHECKPOINT_NAME, TrainingRun, cosine_lr, decay_groups, load_config
from .lora import add_lora, merge_lora
from .precision import PRECISIONS, resolve_precision

TOKENIZER_NAME = "tokenizer.model"
BEST_NAME = "best.pt"  # the weights of the lowest validation loss (LMTrainConfig.valid_codes)
VALID_SEED = 7919  # the validation windows' own draw, the same in every run
MODEL_TYPE_OF_MODE = {mode: model_type for model_type, mode in MODE_OF_MODEL_TYPE.items()}  # asr -> stt ...
DEFAULT_TEXT_SHIFT = {"asr": 0.48, "tts": -0.48, "dialogue": 0.0}  # seconds; 6 frames each way


def small_lm_config(mode: str, card: int = 1024, text_card: int = 1000, codebooks: int = 8,
                    vad_heads: int = 4) -> LMConfig:
    """The shape of delaykit's default model of ``mode``: a 6 x 256 temporal transformer (RMSNorm, SiLU
    gating, RoPE, 20 s context), plus a 2 x 128 depth transformer where the mode generates audio."""
    generated = {"asr": 0, "tts": codebooks, "dialogue": codebooks}[mode]
    fed = {"asr": codebooks, "tts": 0, "dialogue": codebooks}[mode]
    acoustic = [0] + [1] * (codebooks - 1)  # acoustic codebooks one frame behind the semantic one
    delays = [0] + (acoustic if generated else []) + (acoustic if fed and mode == "dialogue" else [0] * fed)
    return LMConfig(
        delays=delays, n_q=generated + fed, dep_q=generated, card=card, text_card=text_card, dim=256,
        num_heads=4, num_layers=6, hidden_scale=4.125, norm="rms_norm", gating="silu", context=250,
        depformer_dim=128, depformer_num_heads=4, depformer_num_layers=2, depformer_dim_feedforward=384,
        depformer_pos_emb="none", depformer_weights_per_step=generated > 0,
        extra_heads_num_heads=vad_heads if mode == "asr" else 0, extra_heads_dim=2)


@dataclass
class LMTrainConfig:
    """Everything that defines an LM training run (stored as the run's ``config.json``)."""

    mode: str = "asr"
    model: dict = field(default_factory=dict)  # LMConfig fields over small_lm_config(mode, ...)
    init_from: str | None = None  # a checkpoint to fine-tune (its LM config wins over ``model``)
    # A checkpoint of any mode whose weights seed this run's fresh model where they fit
    # (delaykit.train.warm_start): e.g. a dialogue model from the TTS model that speaks in the same codes.
    warm_start: str | None = None
    lora_rank: int = 0  # > 0: train low-rank adapters only (delaykit.train.lora), merged on export
    lora_scaling: float = 2.0
    codec: str = "default"  # checkpoint whose codec encoded the corpus (exported with the model)
    codebooks: int | None = None  # audio codebooks per stream the model reads/writes (None: all the corpus has)
    text_shift_seconds: float | None = None  # None: DEFAULT_TEXT_SHIFT[mode]
    vad_horizons: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)  # asr only: P(no voice) horizons of the heads
    window_frames: int = 250
    window_start_prob: float = 0.0  # share of windows opening at their sequence's start (see lm_data)
    batch_size: int = 16
    text_weight: float = 1.0
    text_padding_weight: float = 0.5
    first_codebook_weight: float = 100.0
    vad_weight: float = 0.2
    # dialogue: > 0 adds a training-only head on the temporal transformer that transcribes the user, its words
    # ``user_text_shift_seconds`` behind the user's audio, at this loss weight. The agent's own text holds only
    # a word or two per answer that depends on what the user said, too little to learn listening from; the
    # head asks for every word heard. It is not exported.
    user_text_weight: float = 0.0
    user_text_shift_seconds: float = 0.48
    # tts: condition the model on the voice of what it says (accent, timbre, pitch step, speaking rate of each
    # utterance; delaykit.voice), given per frame; each attribute is left out in ``condition_dropout`` of the
    # windows so that any may be absent when synthesizing. Needs a corpus that records its utterances.
    voice_conditions: bool = False
    condition_dropout: float = 0.15
    # Probability that a word token of the text the model reads back (its own past output, teacher-forced)
    # is swapped for a random one; targets stay clean. Makes the model listen instead of leaning on the
    # text history, which on a small corpus of generated sentences it otherwise does (fluent nonsense when
    # decoding freely).
    text_input_noise: float = 0.0
    # Probability that a code of the audio the model listens to (its fed streams: the user in dialogue, the
    # speech in ASR) is replaced by a random code in the input. Against memorising token sequences of a small
    # corpus: the model has to read through codes that are off, as codes of unheard voices are.
    audio_input_noise: float = 0.0
    # tts: share of windows whose whole text input is blanked (ZERO tokens, as the text-free half of direct
    # classifier-free guidance reads it), their text loss left out. A model trained with it is exported with
    # ``direct_cfg: true``: synthesis then guides its audio by the difference text makes (``cfg_coef``).
    text_dropout: float = 0.0
    lr: float = 1e-3
    # When set, the cosine reaches its floor after this much training time instead of at ``decay_steps`` (a
    # run of a fixed time budget on hardware whose speed is not known beforehand, e.g. a lent GPU).
    decay_minutes: float | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 200
    decay_steps: int = 4000
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    max_steps: int | None = None
    minutes: float | None = None
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    seed: int = 0
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda (each torchrun process takes cuda:LOCAL_RANK)
    # How the processes of a torchrun run share the model (delaykit.train.distributed): "ddp", a whole copy
    # each; "fsdp", a shard each of the weights, gradients and optimizer state (each temporal layer its own
    # unit), for a model that does not fit one device with its optimizer. Ignored in a single process.
    parallel: str = "ddp"
    # fp32 | bf16: the forward under bf16 autocast (weights and optimizer stay fp32); auto: bf16 where the device
    # computes it natively (delaykit.train.precision), else fp32
    precision: str = "auto"
    # Held-out code corpora: every ``valid_every`` steps the losses on ``valid_batches`` fixed batches of them
    # are logged (valid_* in the metrics) and the weights with the lowest total go to ``best.pt``, which
    # ``export_lm(..., checkpoint="best.pt")`` exports: the step a long run on little data should stop at.
    valid_codes: list[str] = field(default_factory=list)
    valid_every: int = 0
    valid_batches: int = 8

    def __post_init__(self) -> None:
        if self.mode not in MODEL_TYPE_OF_MODE:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {sorted(MODEL_TYPE_OF_MODE)}")
        if self.text_dropout and self.mode != "tts":
            raise ValueError("text_dropout trains a TTS model for classifier-free guidance")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.parallel not in STRATEGIES:
            raise ValueError(f"parallel {self.parallel!r}: expected one of {STRATEGIES}")

    @property
    def text_shift(self) -> float:
        return DEFAULT_TEXT_SHIFT[self.mode] if self.text_shift_seconds is None else self.text_shift_seconds

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LMTrainConfig:
        data = dict(data)
        if isinstance(data.get("valid_codes"), str):  # one path, as --set valid_codes=PATH gives it
            data["valid_codes"] = [data["valid_codes"]]
        for key in ("betas", "vad_horizons"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: tp.Iterable[str] = (),
             mode: str | None = None) -> LMTrainConfig:
        defaults = cls(mode=mode or "asr").to_dict()
        return load_config(defaults, cls.from_dict, path, overrides)


def build_lm(config: LMTrainConfig, tokenizer: TextTokenizer, codebooks: int,
             log: tp.TextIO | None = None, voices: tuple[list[str], list[str]] | None = None) -> LMModel:
    """A fresh model of the run's shape, or the ``init_from`` checkpoint's LM to fine-tune. ``voices``: the
    accents and timbres of the corpus, for a voice-conditioned model (``config.voice_conditions``)."""
    if config.init_from is not None:
        if config.warm_start is not None:
            raise ValueError("init_from (fine-tune a checkpoint) and warm_start (seed a fresh model) exclude "
                             "each other")
        from ..engine import load_engine

        engine = load_engine(config.init_from, device="cpu")
        if engine.lm is None:
            raise ValueError(f"{config.init_from}: has no LM to fine-tune")
        return engine.lm.float().train()
    shape = small_lm_config(config.mode, text_card=tokenizer.vocab_size, codebooks=codebooks,
                            vad_heads=len(config.vad_horizons)).to_kyutai()
    if config.voice_conditions:
        if voices is None:
            raise ValueError("voice_conditions needs the corpus's voices")
        shape.update(voice_conditioners(*voices))
    shape.update(config.model)
    lm = LMModel(LMConfig.from_kyutai(shape))
    if config.warm_start is not None:
        from ..engine import load_engine
        from .warm_start import warm_start

        source = load_engine(config.warm_start, device="cpu").lm
        if source is None:
            raise ValueError(f"{config.warm_start}: has no LM to warm-start from")
        print(f"{config.warm_start}: {warm_start(lm, source.float()).summary()}", file=log or sys.stderr,
              flush=True)
    return lm.train()


def corpus_voices(corpus: CodeCorpus) -> tuple[list[str], list[str]]:
    """The accents and timbres spoken in a corpus (sorted)."""
    if corpus.utterances is None:
        raise ValueError("voice_conditions need a corpus that records its utterances (`delaykit data annotate`)")
    values = [utterance_values(u) for utterances in corpus.utterances for u in utterances]
    accents = sorted({v["accent"] for v in values if v["accent"] is not None})
    timbres = sorted({v["timbre"] for v in values if v["timbre"] is not None})
    return accents, timbres


def stream_spec(config: LMTrainConfig, lm: LMModel) -> StreamSpec:
    fed = lm.config.n_q - lm.dep_q
    horizons = config.vad_horizons if lm.config.extra_heads_num_heads else ()
    if horizons and len(horizons) != lm.config.extra_heads_num_heads:
        raise ValueError(f"{len(horizons)} vad_horizons for {lm.config.extra_heads_num_heads} extra heads")
    user_shift = config.user_text_shift_seconds if config.user_text_weight > 0 else None
    voice_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if config.voice_conditions:
        if lm.condition_provider is None:
            raise ValueError("voice_conditions: the model has no conditioners")
        conditioners = lm.condition_provider.conditioners
        voice_values = tuple((name, tuple(conditioners[name].possible_values)) for name in VOICE_ATTRIBUTES)
    return StreamSpec(config.mode, config.text_shift, lm.dep_q, fed, tuple(horizons), user_shift, voice_values,
                      config.condition_dropout)


def weighted_ce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean cross-entropy over ``valid`` positions of ``logits`` [..., V] / ``targets`` [...];
    also returns the accuracy there."""
    if not bool(valid.any()):
        zero = logits.new_zeros(())
        return zero + 0.0 * logits.nan_to_num().sum(), zero
    chosen_logits, chosen_targets, chosen_weights = logits[valid], targets[valid], weights[valid]  # [N, V], [N]
    losses = F.cross_entropy(chosen_logits.float(), chosen_targets, reduction="none")  # [N]
    loss = (losses * chosen_weights).sum() / chosen_weights.sum().clamp(min=1e-9)
    accuracy = (chosen_logits.argmax(-1) == chosen_targets).float().mean()
    return loss, accuracy


class TrainingForward(torch.nn.Module):
    """The LM's teacher-forced forward plus its extra heads and the training-only user-text head, as one
    module (what DDP wraps)."""

    def __init__(self, lm: LMModel, user_text_head: torch.nn.Module | None = None):
        super().__init__()
        self.lm = lm
        self.user_text_head = user_text_head

    def forward(self, codes: torch.Tensor, input_codes: torch.Tensor | None = None,
                conditions: torch.Tensor | None = None) -> tuple[LMOutput, torch.Tensor | None, torch.Tensor | None]:
        """``conditions`` [B, A, T]: per-frame value indices of the voice attributes (``Batch.conditions``)."""
        frame_condition = None
        if conditions is not None:
            assert self.lm.condition_provider is not None
            lookups = self.lm.condition_provider.conditioners
            frame_condition = sum(lookups[name].embed_indices(conditions[:, a])  # [B, T, dim]
                                  for a, name in enumerate(VOICE_ATTRIBUTES))
        out = self.lm(codes, input_codes=input_codes, frame_condition=frame_condition)
        assert out.hidden is not None
        heads = None
        if self.lm.extra_heads:
            heads = torch.stack([head(out.hidden) for head in self.lm.extra_heads], dim=1)  # [B, H, T, C]
        user_logits = None if self.user_text_head is None else self.user_text_head(out.hidden)  # [B, T, V]
        return out, heads, user_logits


class LMTrainer(TrainingRun):
    """Owns the LM, optimizer, batcher and run directory of one LM training run."""

    seen_unit = "frames"

    def __init__(self, config: LMTrainConfig, corpus: CodeCorpus | tp.Sequence[str | os.PathLike],
                 tokenizer: str | os.PathLike, run_dir: str | os.PathLike, resume: bool = False,
                 log: tp.TextIO | None = None) -> None:
        from ..engine import resolve_device

        if config.valid_every and not config.valid_codes:
            raise ValueError("valid_every needs valid_codes")
        self.config = config
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.device = resolve_device(config.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = resolve_precision(config.precision, self.device)  # fp32 | bf16
        if not isinstance(corpus, CodeCorpus):
            corpus = CodeCorpus.load_many(list(corpus))
        self.tokenizer = TextTokenizer(tokenizer)
        if config.codebooks is not None and not 0 < config.codebooks <= corpus.num_codebooks:
            raise ValueError(f"codebooks={config.codebooks}: the corpus has {corpus.num_codebooks} per channel")
        self.lm = build_lm(config, self.tokenizer, config.codebooks or corpus.num_codebooks, log,
                           corpus_voices(corpus) if config.voice_conditions else None)
        if config.lora_rank:
            add_lora(self.lm, config.lora_rank, config.lora_scaling)
        if self.lm.config.text_card < self.tokenizer.vocab_size:
            raise ValueError(f"tokenizer has {self.tokenizer.vocab_size} pieces, the LM only "
                             f"{self.lm.config.text_card} text ids")
        self.lm.to(self.device)
        if self.lm.dep_q == 0 and self.dist.enabled:
            # The depth input projection exists (Kyutai's keys) but nothing uses it: DDP refuses parameters
            # that never get a gradient.
            for parameter in self.lm.depformer_in.parameters():
                parameter.requires_grad_(False)
        self.user_text_head: torch.nn.Linear | None = None
        if config.user_text_weight > 0:
            if config.mode != "dialogue":
                raise ValueError("user_text_weight is for dialogue (the head transcribes the user)")
            self.user_text_head = torch.nn.Linear(self.lm.config.dim, self.lm.text_linear.out_features,
                                                  bias=False).to(self.device)
        # what the step calls: DDP around it, or itself sharded by FSDP, in a multi-process run
        self.model: torch.nn.Module = TrainingForward(self.lm, self.user_text_head)
        self.sharded = self.dist.enabled and config.parallel == "fsdp"
        if self.dist.enabled:
            self.model = wrap_for_ranks(self.model, config.parallel, self.device,
                                        shard_units=list(self.lm.transformer.layers))
        self.spec = stream_spec(config, self.lm)
        # Each rank draws its own windows; batch_size is per rank.
        self.batcher = StreamBatcher(corpus, self.tokenizer.encode, self.spec, config.window_frames,
                                     config.batch_size, seed=config.seed + 1009 * self.dist.rank,
                                     start_prob=config.window_start_prob)
        self.optimizer = torch.optim.AdamW(decay_groups(self._trained(), config.weight_decay), lr=config.lr,
                                           betas=config.betas)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matrix products on tensor cores
        self.valid_batches = self._valid_batches() if config.valid_codes else []
        self.best_valid = math.inf  # lowest validation total so far (the weights in best.pt)
        self.setup_run(run_dir, log, config.to_dict())
        if self.dist.is_main:
            print(f"precision: {self.precision}" + (" (auto)" if config.precision == "auto" else ""), file=self.log,
                  flush=True)
        if self.dist.is_main and Path(tokenizer).resolve() != (self.run_dir / TOKENIZER_NAME).resolve():
            shutil.copyfile(tokenizer, self.run_dir / TOKENIZER_NAME)
        if resume:
            self.load_checkpoint()

    def _valid_batches(self) -> list[Batch]:
        """The fixed validation batches: windows of the held-out corpora drawn once, with a seed of their own,
        every voice attribute given (no condition dropout)."""
        corpus = CodeCorpus.load_many(list(self.config.valid_codes))  # the spec reads the codebooks it needs
        spec = dataclasses.replace(self.spec, condition_dropout=0.0)
        batcher = StreamBatcher(corpus, self.tokenizer.encode, spec, self.config.window_frames,
                                self.config.batch_size, seed=VALID_SEED, start_prob=self.config.window_start_prob)
        return [batcher.next_batch() for _ in range(self.config.valid_batches)]

    def validate(self) -> dict[str, float]:
        """Mean losses and accuracies over the validation batches (no noise, no dropout, no gradient); keeps the
        weights in ``best.pt`` when the total is the lowest yet."""
        self.lm.eval()
        sums: dict[str, float] = {}
        with torch.no_grad():
            for batch in self.valid_batches:
                for key, value in self.losses(batch).items():
                    sums[key] = sums.get(key, 0.0) + float(value.item())
        self.lm.train()
        row = {f"valid_{key}": value / len(self.valid_batches) for key, value in sums.items()}
        if self.dist.any(row["valid_total"] < self.best_valid):  # all ranks: gathering sharded weights is collective
            self.best_valid = row["valid_total"]
            best = {**self.weights_state(), "step": self.step, "seen": self.seen,
                    "train_seconds": self.train_seconds, "valid": row}
            if self.dist.is_main:
                tmp = self.run_dir / (BEST_NAME + ".tmp")
                torch.save(best, tmp)
                os.replace(tmp, self.run_dir / BEST_NAME)
        return row

    def _trained(self) -> torch.nn.Module:
        """The modules the optimizer updates: the LM, and the user-text head when there is one."""
        return torch.nn.ModuleList([self.lm] + ([self.user_text_head] if self.user_text_head is not None else []))

    def learning_rate(self, step: int) -> float:
        cfg = self.config
        by_clock = None if cfg.decay_minutes is None else self.train_seconds / (60 * cfg.decay_minutes)
        return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.decay_steps, cfg.min_lr_ratio, progress=by_clock)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Each loss (and accuracy) of one batch; ``total`` is what is minimised."""
        cfg = self.config
        codes = batch.codes.to(self.device)  # [B, K, T]
        noisy = self.lm.training and (cfg.text_input_noise > 0 or cfg.audio_input_noise > 0)
        input_codes = self.noisy_inputs(codes) if noisy else None
        text_kept = torch.ones(codes.shape[0], 1, dtype=torch.bool, device=codes.device)  # [B, 1]
        if self.lm.training and cfg.text_dropout > 0:
            input_codes, text_kept = self.blank_text(codes if input_codes is None else input_codes)
        # LMOutput, [B, H, T, 2] end-of-speech logits, [B, T, V] user-text logits
        conditions = None if batch.conditions is None else batch.conditions.to(self.device)  # [B, A, T]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out, heads, user_logits = self.model(codes, input_codes, conditions)
        text = codes[:, 0]  # [B, T]
        text_weights = torch.where(text == PAD_ID, cfg.text_padding_weight, 1.0)  # [B, T]
        text_mask = out.text_mask[:, 0] & text_kept  # [B, T]: no text targets where it was not read either
        text_loss, text_accuracy = weighted_ce(out.text_logits[:, 0], text, text_mask, text_weights)
        # Accuracy on word tokens alone: what a transcript is made of.
        word_valid = text_mask & (text != PAD_ID)
        _, word_accuracy = weighted_ce(out.text_logits[:, 0], text, word_valid, torch.ones_like(text_weights))
        total = cfg.text_weight * text_loss
        result = {"text": text_loss, "text_acc": text_accuracy, "word_acc": word_accuracy}
        if self.lm.dep_q:
            audio = codes[:, 1:1 + self.lm.dep_q]  # [B, dep_q, T]
            weights = torch.ones_like(audio, dtype=torch.float32)
            weights[:, 0] = cfg.first_codebook_weight
            audio_loss, audio_accuracy = weighted_ce(out.logits, audio, out.mask, weights)
            total = total + audio_loss
            result.update(audio=audio_loss, audio_acc=audio_accuracy)
        if self.spec.vad_horizons:
            no_voice = batch.no_voice.to(self.device)  # [B, H, T]
            known = no_voice >= 0
            classes = 1 - no_voice.clamp(min=0)  # class 0 = nobody speaks over the horizon
            vad_loss, vad_accuracy = weighted_ce(heads, classes, known, torch.ones_like(classes, dtype=torch.float))
            total = total + cfg.vad_weight * vad_loss
            result.update(vad=vad_loss, vad_acc=vad_accuracy)
        if user_logits is not None and batch.user_text is not None:
            heard = batch.user_text.to(self.device)  # [B, T]
            known = heard >= 0
            weights = torch.where(heard == PAD_ID, cfg.text_padding_weight, 1.0)
            user_loss, _ = weighted_ce(user_logits, heard.clamp(min=0), known, weights)
            _, user_word_accuracy = weighted_ce(user_logits, heard.clamp(min=0), known & (heard != PAD_ID), weights)
            total = total + cfg.user_text_weight * user_loss
            result.update(user_text=user_loss, user_word_acc=user_word_accuracy)
        result["total"] = total
        return result

    def blank_text(self, input_codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_codes`` [B, K, T] with the text of a ``text_dropout`` share of the windows all ZERO (what
        direct CFG's text-free half reads), and which windows kept it [B, 1]."""
        kept = torch.rand(input_codes.shape[0], 1, device=input_codes.device) >= self.config.text_dropout  # [B, 1]
        blanked = input_codes.clone()
        blanked[:, 0] = torch.where(kept, input_codes[:, 0], ZERO_TOKEN)
        return blanked, kept

    def noisy_inputs(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` [B, K, T] as the model reads them: a ``text_input_noise`` share of its word tokens replaced
        by random word tokens, and an ``audio_input_noise`` share of its fed audio codes by random codes."""
        cfg = self.config
        text = codes[:, 0]  # [B, T]
        words = text >= len(SPECIAL_TOKENS)  # PAD, EPAD and the other reserved ids keep the timing intact
        swap = words & (torch.rand(text.shape, device=text.device) < cfg.text_input_noise)
        random_words = torch.randint(len(SPECIAL_TOKENS), self.tokenizer.vocab_size, text.shape, device=text.device)
        noisy = codes.clone()
        noisy[:, 0] = torch.where(swap, random_words, text)
        if cfg.audio_input_noise > 0:
            fed = noisy[:, 1 + self.lm.dep_q:]  # [B, K_fed, T] (a view)
            real = fed >= 0  # ZERO / ungenerated placeholders stay as they are
            swap = real & (torch.rand(fed.shape, device=fed.device) < cfg.audio_input_noise)
            fed.copy_(torch.where(swap, torch.randint_like(fed, self.lm.config.card), fed))
        return noisy

    def train_step(self) -> dict[str, float]:
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.batcher.next_batch()
        losses = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        trained = [p for p in self._trained().parameters() if p.requires_grad]
        grad_norm = whole(torch.nn.utils.clip_grad_norm_(trained, self.config.grad_clip))
        self.optimizer.step()
        self.step += 1
        self.seen += batch.codes.shape[0] * batch.codes.shape[2] * self.dist.world_size
        row = {key: float(value.item()) for key, value in losses.items()}
        row.update(loss=row.pop("total"), grad_norm=float(grad_norm.item()), lr=lr)
        if self.config.valid_every and self.step % self.config.valid_every == 0:
            row.update(self.validate())
        return row

    def progress(self, row: dict) -> str:
        parts = [f"loss {row['loss']:.4f}", f"text {row['text']:.3f}", f"word acc {row['word_acc']:.3f}"]
        if "audio" in row:
            parts.append(f"audio {row['audio']:.3f}")
        if "vad" in row:
            parts.append(f"vad {row['vad']:.3f}")
        if "user_text" in row:
            parts.append(f"user text {row['user_text']:.3f} acc {row['user_word_acc']:.3f}")
        if "valid_total" in row:
            parts.append(f"valid {row['valid_total']:.4f}")
        hours = row["seen"] / self.batcher.corpus.frame_rate / 3600
        return " ".join(parts) + f" lr {row['lr']:.2e}, {hours:.1f} h seen"

    def weights_state(self) -> dict:
        """The LM's weights (a whole copy on the CPU, however the ranks share them) with what ``export_lm``
        needs to rebuild it."""
        return {"model": whole_state_dict(self.lm), "lm_config": self.lm.config.to_kyutai(),
                "config": self.config.to_dict()}

    def model_state(self) -> dict:
        state = {**self.weights_state(),
                 "optimizer": optimizer_state(self.model, self.optimizer, self.sharded), "sharded": self.sharded}
        if self.user_text_head is not None:
            state["user_text_head"] = whole_state_dict(self.user_text_head)
        if self.valid_batches:
            state["best_valid"] = self.best_valid
        return state

    def load_model_state(self, state: dict) -> None:
        if state.get("sharded", False) != self.sharded:
            raise ValueError("the checkpoint's optimizer state was written by a run with parallel="
                             f"{'fsdp' if state.get('sharded') else 'ddp'}: resume it with the same")
        load_whole_state_dict(self.lm, state["model"])
        if self.user_text_head is not None:
            load_whole_state_dict(self.user_text_head, state["user_text_head"])
        load_optimizer_state(self.model, self.optimizer, state["optimizer"], self.sharded)
        self.best_valid = state.get("best_valid", math.inf)

    def rank_state(self) -> dict:
        return {"batcher": self.batcher.state()}

    def load_rank_state(self, state: dict) -> None:
        self.batcher.set_state(state["batcher"])


def export_lm(run_dir: str | os.PathLike, target: str | os.PathLike, fp16: bool = False,
              codec: str | None = None, codec_from: str | None = None, default_voice: dict | None = None,
              text_sampling: dict | None = None, audio_sampling: dict | None = None,
              silence_prefix: float | None = None, checkpoint: str = CHECKPOINT_NAME,
              codec_patch: bool = False, codec_patch_from: str | None = None) -> Path:
    """Write a run's latest LM, with its codec and tokenizer, as a checkpoint directory ``delaykit.load`` runs.

    ``default_voice`` (``VoiceChoice`` fields) is what a voice-conditioned TTS model speaks with when asked for no
    voice; ``text_sampling`` and ``audio_sampling`` (``SamplingOptions`` fields) how a dialogue model's text and
    audio are best sampled (what ``DialogueOptions`` uses unless told otherwise). ``codec`` bundles another codec
    checkpoint than the run's; ``codec_from`` bundles none and names the shipped checkpoint whose codec the model
    uses (``checkpoints.CODEC_FROM_KEY``), which must encode exactly like the run's codec (same encoders and
    codebooks; its decoder may differ), unless ``codec_patch``: then the encode-path weights in which the run's
    codec differs are stored with the model (``codec_patch.safetensors``, in float16 where that is exact) and
    replace the shared codec's when it loads; ``codec_patch_from`` instead names the shipped checkpoint whose
    patch the model uses (``checkpoints.CODEC_PATCH_FROM_KEY``): the shared codec with that patch must encode
    like the run's. ``silence_prefix`` is the silence an ASR model is fed before the audio
    (default: the middle of the lead-in silence that code corpora open their sequences with,
    ``PackConfig.lead_seconds``, which is what such a model saw before speech).
    ``checkpoint`` names the file of the run directory to export (``BEST_NAME``: the lowest validation loss).
    """
    from ..engine import load_engine, save_engine

    run_dir = Path(run_dir)
    state = torch.load(run_dir / checkpoint, map_location="cpu", weights_only=True)
    config = LMTrainConfig.from_dict(state["config"])
    lm = LMModel(LMConfig.from_kyutai(state["lm_config"]))  # on the CPU, whatever the run used
    if config.lora_rank:
        add_lora(lm, config.lora_rank, config.lora_scaling)
    lm.load_state_dict(state["model"], strict=True)
    merge_lora(lm)
    if fp16:
        lm = lm.half()
    codec_model = load_engine(codec or config.codec, device="cpu").codec
    if codec_model is None:
        raise ValueError(f"{codec or config.codec}: has no codec")
    meta: dict = {"training": {"step": state["step"], "frames_seen": state["seen"],
                               "train_hours": round(state["train_seconds"] / 3600, 3), "run": config.to_dict()}}
    patch = None
    if (codec_patch or codec_patch_from) and codec_from is None:
        raise ValueError("a codec patch replaces weights of the codec that codec_from names: set codec_from")
    if codec_patch and codec_patch_from:
        raise ValueError("a model carries a codec patch of its own or uses another's, not both")
    if codec_from is not None:
        shared = load_engine(codec_patch_from or codec_from, device="cpu").codec
        if codec_patch_from is not None:
            if resolve_checkpoint(codec_patch_from).config.get(CODEC_FROM_KEY) != codec_from:
                raise ValueError(f"{codec_patch_from}: its patch is not one of {codec_from}'s codec")
            meta[CODEC_PATCH_FROM_KEY] = codec_patch_from
        if shared is not None and codec_patch:
            patch = _lossless_half(shared.encode_path_changes(codec_model))
            if not patch:
                raise ValueError(f"{codec_from}: its codec already encodes like {codec or config.codec}: no patch")
            with contextlib.suppress(RuntimeError):  # weights of other shapes: refused just below
                shared.load_state_dict({key: value.float() for key, value in patch.items()}, strict=False)
        if shared is None or not shared.encodes_like(codec_model):
            raise ValueError(f"{codec_from}: its codec does not encode like {codec or config.codec}, whose codes "
                             "the model was trained on (a codec_patch may replace some of its encoder weights)")
        meta[CODEC_FROM_KEY] = codec_from
        codec_model = None
    if config.mode == "asr":
        if silence_prefix is None:
            silence_prefix = sum(PackConfig().lead_seconds) / 2
        meta["stt_config"] = {"audio_delay_seconds": config.text_shift,
                              "audio_silence_prefix_seconds": silence_prefix}
    elif config.mode == "tts":
        # Direct CFG's text-free half means something only to a model trained with its text dropped.
        meta["tts_config"] = {"audio_delay": -config.text_shift, "direct_cfg": config.text_dropout > 0}
        if default_voice:
            if not config.voice_conditions:
                raise ValueError("a default voice is for a model trained with voice_conditions")
            VoiceChoice(**default_voice).values()  # a valid pitch / rate, or ValueError
            assert lm.condition_provider is not None
            known = model_voices(lm.condition_provider.conditioners)
            if default_voice.get("voice") is not None and default_voice["voice"] not in known:
                raise ValueError(f"no voice {default_voice['voice']!r} in this model")
            meta["tts_config"]["default_voice"] = default_voice
    else:
        dialogue_config: dict = {}
        if config.text_shift != 0:  # dialogue whose words lead (or trail) the agent's speech
            dialogue_config["audio_delay"] = -config.text_shift
        for key, sampling in (("text_sampling", text_sampling), ("audio_sampling", audio_sampling)):
            if sampling:
                dialogue_config[key] = dataclasses.asdict(SamplingOptions(**sampling))
        if dialogue_config:
            meta["dialogue_config"] = dialogue_config
    if (text_sampling or audio_sampling) and config.mode != "dialogue":
        raise ValueError("a recommended sampling is for dialogue models")
    save_engine(target, codec_model, lm, run_dir / TOKENIZER_NAME, MODEL_TYPE_OF_MODE[config.mode], meta, patch)
    return Path(target)


def _lossless_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every float tensor that float16 holds exactly stored as float16 (half the bytes)."""
    return {key: value.half() if value.is_floating_point() and torch.equal(value.half().to(value.dtype), value)
            else value for key, value in state.items()}
