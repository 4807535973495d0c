"""Codec training on CPU: random crops, spectral losses, EMA codebooks, resumable checkpoints, export.

One step draws a batch of 1-2 s crops (a whole number of codec frames) and runs the codec's encode ->
quantize -> decode path in train mode: the quantizer updates its EMA codebooks, restarts dead codes and,
with ``q_dropout``, picks a random number of acoustic codebooks; a share of the batch (``quantize_prob``,
after an unquantized warm-up) is decoded from quantized latents, the rest from unquantized ones (see
``CodecTrainer._forward``). It minimises::

    l1_weight * |x - y|  +  stft_weight * multi-resolution STFT  +  mel_weight * multi-resolution log-mel
                         +  commit_weight * commitment  +  phoneme_weight * phoneme cross-entropy
                         +  f0_weight * |log F0 error|  +  voicing_weight * voicing cross-entropy
                         +  adversarial_weight * hinge  +  feature_weight * feature matching

The phoneme term (off by default) makes the semantic codebook phonetic: a linear classifier on the semantic
quantizer's output names the phoneme at ``phoneme_slots`` instants of every frame (``delaykit.train.phonemes``;
targets from the manifests' espeak phonemes). The classifier is training-only and is not exported. With
``semantic_only`` a run trains nothing but the semantic encoder of an existing codec, on the phoneme and
commitment terms alone (no decoding): the semantic codebook, its projections and everything else stay as
loaded, so the encoder learns to pick, for voices it maps badly, the codes whose meaning the codebook already
has (see ``CodecTrainer._semantic_step``). The F0 and
voicing terms apply to a harmonic decoder (``delaykit.codec.harmonic``): YIN (``delaykit.pitch``) on the
target audio gives every 10 ms step an F0 or "unvoiced", and with ``teacher_f0`` the decoder's pulse train
runs at that F0 where the target is voiced. The adversarial terms (off by default) come from a
multi-resolution STFT discriminator (``delaykit.train.discriminator``) that trains beside the codec, one step
of its own after each codec step; it is saved in the checkpoint and not exported.

with AdamW in fp32, starting from :func:`signal_preserving_init`. A run directory holds ``config.json`` (the
:class:`CodecTrainConfig`), ``checkpoint.pt`` (model, optimizer, step, every RNG state and the data
sampler's position; written atomically every ``checkpoint_minutes`` and at the end) and ``metrics.jsonl``. ``resume=True`` continues a killed run exactly
where its last checkpoint left it. :func:`export_codec` writes a codec-only checkpoint directory that
:mod:`delaykit.checkpoints` reads: ``config.json`` with ``"codec_config"`` and ``codec.safetensors``.
"""

from __future__ import annotations

import dataclasses
import os
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ..codec.harmonic import HarmonicDecoder
from ..codec.model import CodecConfig, CodecModel
from ..codec.quantizer import QuantizerConfig, QuantizerOutput
from ..codec.seanet import SeanetConfig
from ..codec.semantic import SemanticEncoder
from ..codec.spectral import SpectralDecoder
from ..data.crops import AudioCorpus, CropConfig, CropSampler
from ..pitch import PitchConfig, f0_track
from ..transformer import TransformerConfig
from .discriminator import (
    DiscriminatorConfig,
    MultiResolutionDiscriminator,
    Scores,
    discriminator_loss,
    generator_losses,
)
from .loop import CHECKPOINT_NAME, TrainingRun, cosine_lr, decay_groups, load_config
from .losses import MultiResolutionSpectralLoss, SpectralLossConfig
from .phonemes import IGNORE, PhonemeInventory, PhonemeTimeline, slot_targets


def small_codec_config() -> CodecConfig:
    """A CPU-trainable Mimi: same structure and 12.5 Hz frames, 16 base channels, width 128.

    SEANet ratios (8, 6, 5, 4) (hop 960, 25 Hz) + learnt stride-2 downsample; a 2-layer transformer on
    each side; split RVQ with 1 semantic + 7 acoustic codebooks of 1024 x 64; quantizer dropout on.
    """
    dimension = 128
    return CodecConfig(
        seanet=SeanetConfig(n_filters=16, dimension=dimension),
        quantizer=QuantizerConfig(dimension=64, input_dimension=dimension, output_dimension=dimension,
                                  n_q=8, bins=1024, q_dropout=True),
        transformer=TransformerConfig(d_model=dimension, num_heads=4, num_layers=2, dim_feedforward=512,
                                      causal=True, context=250, positional_embedding="rope",
                                      max_period=10_000, norm="layer_norm", gating="none",
                                      layer_scale=0.01, max_chunk=8),
        num_codebooks=8,
    )


@dataclass
class CodecTrainConfig:
    """Everything that defines a codec training run (stored as the run's ``config.json``)."""

    model: CodecConfig = field(default_factory=small_codec_config)
    crops: CropConfig = field(default_factory=CropConfig)
    spectral: SpectralLossConfig = field(default_factory=SpectralLossConfig)
    l1_weight: float = 0.1
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    commit_weight: float = 1.0
    phoneme_weight: float = 0.0  # > 0: phoneme classification from the semantic codebook (module docstring)
    phoneme_slots: int = 4  # phoneme targets per frame (4 at 12.5 Hz: one every 20 ms)
    # Frame t names the sounds of frame t - k (``delaykit.train.phonemes.slot_targets``): the semantic codes
    # trail the audio by k frames and each is chosen having heard k frames past its sounds.
    phoneme_lookahead_frames: int = 0
    f0_weight: float = 1.0  # harmonic decoder: L1 on log F0 where the target is voiced
    voicing_weight: float = 0.5  # harmonic decoder: voiced / unvoiced cross-entropy
    teacher_f0: bool = True  # harmonic decoder: the pulse train runs at the target's F0 where it is voiced
    # Adversarial training (module docstring), on when either weight is > 0: the discriminator learns from the
    # first step; the codec minimises its adversarial and feature-matching terms from ``adversarial_after``
    # on (a codec that first learns from spectral losses alone gives the discriminator something to judge).
    adversarial_weight: float = 0.0
    feature_weight: float = 0.0
    adversarial_after: int = 0
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    discriminator_lr: float = 3e-4
    discriminator_betas: tuple[float, float] = (0.5, 0.9)
    init_from: str | None = None  # a codec checkpoint (name or directory) to continue training from
    decoder_only: bool = False  # train only the decode path (see `CodecTrainer`); needs init_from
    # Sub-modules kept as loaded (no gradients, no codebook updates), e.g. ["semantic_encoder",
    # "quantizer.rvq_first"]: the semantic codes, and the models that read only them, stay valid.
    frozen: tuple[str, ...] = ()
    # Train only the semantic encoder (module docstring); needs init_from and phoneme_weight > 0. For its first
    # ``head_warmup_steps`` only the (new) phoneme classifier learns, so that the encoder is not pushed around
    # by a random one.
    semantic_only: bool = False
    head_warmup_steps: int = 0
    # Codebooks the quantized latents keep (None: all of them, or a random number with ``q_dropout``): e.g. 4 to
    # train a decoder on what delaykit's language models generate.
    codebooks: int | None = None
    quantize_prob: float = 0.5  # per item: decode the quantized latent, else the unquantized one (as Mimi)
    quantize_after: int = 0  # steps that decode only unquantized latents (the codebooks still follow them)
    quantize_ramp: int = 0  # then steps over which the quantized share grows linearly to quantize_prob
    weight_norm: bool = False  # reparametrise SEANet convs while training; export folds it back
    signal_init: bool = True  # variance-preserving conv init with zero biases (see `signal_preserving_init`)
    lr: float = 1e-3
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 1e-2  # on matrices and kernels only
    warmup_steps: int = 200
    decay_steps: int = 3000  # cosine decay from lr to lr * min_lr_ratio over this many steps, then flat
    min_lr_ratio: float = 0.1
    grad_clip: float = 2.0
    max_steps: int | None = None  # total steps of the run (None: until `minutes` runs out)
    minutes: float | None = None  # wall-clock budget of this invocation (None: until max_steps)
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    seed: int = 0
    threads: int = 1  # torch intra-op threads

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CodecTrainConfig:
        data = dict(data)
        kwargs: dict[str, tp.Any] = {}
        if "model" in data:
            kwargs["model"] = CodecConfig.from_dict(data.pop("model"))
        if "crops" in data:
            crops = dict(data.pop("crops"))
            for key in ("gain_db", "speed"):
                if key in crops:
                    crops[key] = tuple(crops[key])
            kwargs["crops"] = CropConfig(**crops)
        if "spectral" in data:
            spectral = dict(data.pop("spectral"))
            for key in ("windows", "mel_windows"):
                if key in spectral:
                    spectral[key] = tuple(spectral[key])
            kwargs["spectral"] = SpectralLossConfig(**spectral)
        if "discriminator" in data:
            discriminator = dict(data.pop("discriminator"))
            if "windows" in discriminator:
                discriminator["windows"] = tuple(discriminator["windows"])
            kwargs["discriminator"] = DiscriminatorConfig(**discriminator)
        for key in ("betas", "frozen", "discriminator_betas"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**kwargs, **data)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: tp.Iterable[str] = ()) -> CodecTrainConfig:
        """Defaults, updated from a JSON/TOML file, then from ``KEY=VALUE`` overrides (dotted keys nest;
        values parse as JSON when they can, e.g. ``crops.batch_size=16``, ``model.seanet.n_filters=24``)."""
        return load_config(cls().to_dict(), cls.from_dict, path, overrides)


@torch.no_grad()
def signal_preserving_init(model: CodecModel) -> CodecModel:
    """Re-initialise every convolution with N(0, 1 / fan_in) weights and zero biases.

    With PyTorch's default init each conv shrinks its input by ~0.6 and adds a random bias, so after the
    ~10 layers of a SEANet decoder the output is >99 % bias-made buzz that does not depend on the latents,
    and training sat for 1000+ steps on the average spectrum. Unit-gain weights (for ELU, nearly
    linear at these amplitudes) keep the input audible through the whole stack from the first step.
    ``fan_in`` counts the inputs that reach one output: ``C_in / groups * kernel`` for a conv and
    ``C_in / groups * kernel / stride`` for a transposed conv.
    """
    for module in model.modules():
        if not isinstance(getattr(module, "weight", None), nn.Parameter):
            continue  # fixed transforms (the semantic encoder's Fourier basis) keep their buffer
        if isinstance(module, nn.ConvTranspose1d):
            fan_in = module.in_channels // module.groups * module.kernel_size[0] / module.stride[0]
        elif isinstance(module, nn.Conv1d):
            fan_in = module.in_channels // module.groups * module.kernel_size[0]
        else:
            continue
        module.weight.normal_(0.0, fan_in**-0.5)
        if module.bias is not None:
            module.bias.zero_()
    return model


def _seanet_convs(model: CodecModel) -> list[nn.Module]:
    return [m for part in (model.encoder, model.decoder) for m in part.modules()
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


def add_weight_norm(model: CodecModel) -> CodecModel:
    """Weight normalisation on the SEANet convolutions (state-dict keys gain ``parametrizations``)."""
    for conv in _seanet_convs(model):
        weight_norm(conv)
    return model


def fold_weight_norm(model: CodecModel) -> CodecModel:
    """Undo :func:`add_weight_norm`, keeping the current weights: plain keys that ``CodecModel`` loads."""
    for conv in _seanet_convs(model):
        if parametrize.is_parametrized(conv, "weight"):
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return model


def _codebooks(model: CodecModel) -> list:
    quantizer = model.quantizer
    return quantizer.rvq_first.codebooks + quantizer.rvq_rest.codebooks


class CodecTrainer(TrainingRun):
    """Owns the model, optimizer, data sampler and run directory of one codec training run."""

    seen_unit = "audio-s"

    def __init__(self, config: CodecTrainConfig, data: list[str | Path] | AudioCorpus,
                 run_dir: str | os.PathLike, resume: bool = False, log: tp.TextIO | None = None) -> None:
        self.config = config
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model = CodecModel(config.model).train()
        if config.signal_init:
            signal_preserving_init(self.model)
        if config.init_from is not None:
            _continue_from(self.model, _codec_state(config.init_from))
        if config.decoder_only:
            self._freeze_encode_path()
        if config.frozen:
            self._freeze(config.frozen)
        if config.semantic_only:
            self._freeze_all_but_semantic_encoder()
        if config.weight_norm:
            add_weight_norm(self.model)
        self.spectral = MultiResolutionSpectralLoss(config.spectral)
        corpus = data if isinstance(data, AudioCorpus) else AudioCorpus.from_manifests(
            list(data), config.model.sample_rate)
        self.sampler = CropSampler(corpus, config.model.frame_size, config.crops, seed=config.seed)
        self.phoneme_head: nn.Linear | None = None
        if config.phoneme_weight > 0:
            self._setup_phonemes(PhonemeInventory.from_rows(corpus.rows))
        # Frozen parameters (decoder_only, frozen) have requires_grad off: decay_groups leaves them out.
        trained = nn.ModuleList([self.model] + ([self.phoneme_head] if self.phoneme_head is not None else []))
        self.optimizer = torch.optim.AdamW(decay_groups(trained, config.weight_decay), lr=config.lr,
                                           betas=config.betas)
        self.discriminator: MultiResolutionDiscriminator | None = None
        if config.adversarial_weight > 0 or config.feature_weight > 0:
            with torch.random.fork_rng():  # its initial weights leave the codec run's random draws as they were
                torch.manual_seed(config.seed + 1)
                self.discriminator = MultiResolutionDiscriminator(config.discriminator)
            self.discriminator_optimizer = torch.optim.AdamW(
                self.discriminator.parameters(), lr=config.discriminator_lr, betas=config.discriminator_betas,
                weight_decay=0.0)
        self.setup_run(run_dir, log, config.to_dict())
        if resume:
            self.load_checkpoint()

    # ---- decoder-only training ----

    def _freeze_encode_path(self) -> None:
        """With ``decoder_only``: everything up to the codes is fixed (no gradients, no codebook updates), so
        the codes stay those of ``init_from`` and models trained on them (the default ASR) stay valid."""
        if self.config.init_from is None:
            raise ValueError("decoder_only trains a new decode path for an existing codec: set init_from")
        if self.config.phoneme_weight > 0:
            raise ValueError("decoder_only leaves the semantic codebook as it is: set phoneme_weight = 0")
        _keep_as_loaded(self.model.encode_path())

    def _freeze_all_but_semantic_encoder(self) -> None:
        """With ``semantic_only``: every part of the codec but the semantic encoder is kept as loaded."""
        cfg = self.config
        if cfg.init_from is None or cfg.phoneme_weight <= 0 or self.model.semantic_encoder is None:
            raise ValueError("semantic_only retrains the semantic encoder of an existing codec on phonemes: set "
                             "init_from to a codec with a semantic encoder and phoneme_weight > 0")
        if cfg.decoder_only:
            raise ValueError("semantic_only and decoder_only train disjoint parts: choose one")
        _keep_as_loaded(module for name, module in self.model.named_children() if name != "semantic_encoder")

    def _freeze(self, names: tp.Iterable[str]) -> None:
        """Keep the sub-modules ``names`` (dotted paths in the codec) as loaded."""
        if self.config.init_from is None:
            raise ValueError("frozen parts are kept as loaded: set init_from")
        modules = []
        for name in names:
            try:
                modules.append(self.model.get_submodule(name))
            except AttributeError as error:
                raise ValueError(f"frozen: the codec has no part {name!r}") from error
        _keep_as_loaded(modules)

    def _decode_codes(self, audio: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """The ``decoder_only`` encode: codes of the fixed encoder (``codebooks`` of them, else all or, with
        ``q_dropout``, a random number of acoustic codebooks, so fewer codebooks still decode) -> (their latent
        to decode, quantizer output)."""
        model = self.model
        quantizer = model.quantizer
        n_q = quantizer.total_codebooks if self.config.codebooks is None else self.config.codebooks
        if quantizer.config.q_dropout and self.config.codebooks is None:
            n_q = quantizer.n_q_semantic + quantizer._dropout_rng.randint(1, n_q - quantizer.n_q_semantic)
        with torch.no_grad():
            latent, semantic = model.encode_latents(audio)  # [B, D, frames] each (semantic: or None)
            codes = quantizer.encode(latent, n_q, semantic_input=semantic)  # [B, n_q, frames]
            quantized = quantizer.decode(codes)  # [B, D, frames]
        return quantized, QuantizerOutput(quantized, codes, audio.new_zeros(()))

    def _decode(self, latent: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(reconstruction [B, 1, T] of ``audio`` from ``latent`` [B, D, frames], the harmonic decoder's F0 and
        voicing losses: none for other decoders)."""
        model, length = self.model, audio.shape[-1]
        decoder = model.decoder
        if not isinstance(decoder, HarmonicDecoder):
            return model.decode_latent(latent)[..., :length], {}
        frames = decoder.frames(model.decoder_input(latent))  # [B, steps, ...]
        target, known = pitch_targets(audio, frames.f0_hz.shape[1], model.sample_rate, decoder.config.hop,
                                      decoder.config.window)  # [B, steps] each
        voiced = torch.isfinite(target)
        teacher = torch.where(voiced, target, frames.f0_hz.detach()) if self.config.teacher_f0 else None
        recon = decoder.render(frames, teacher)[..., :length]
        f0_error = (frames.f0_hz.log() - torch.where(voiced, target, 1.0).log()).abs()
        f0_loss = (f0_error * voiced).sum() / voiced.sum().clamp_min(1)
        voicing = F.binary_cross_entropy_with_logits(frames.voicing_logit[:, known], voiced[:, known].float())
        return recon, {"f0": f0_loss, "voicing": voicing}

    # ---- schedule and step ----

    def learning_rate(self, step: int) -> float:
        cfg = self.config
        return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.decay_steps, cfg.min_lr_ratio)

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        audio = self.sampler.next_batch()  # [B, 1, T]
        if cfg.semantic_only:
            return self._semantic_step(audio, lr)
        forward = self._decode_codes if cfg.decoder_only else self._forward
        latent, quantized = forward(audio)  # [B, D, frames], codes [B, K, frames]
        recon, pitch = self._decode(latent, audio)  # [B, 1, T]
        stft, mel = self.spectral(recon, audio)
        l1 = F.l1_loss(recon, audio)
        loss = (cfg.l1_weight * l1 + cfg.stft_weight * stft + cfg.mel_weight * mel
                + cfg.commit_weight * quantized.commitment_loss)
        if pitch:
            loss = loss + cfg.f0_weight * pitch["f0"] + cfg.voicing_weight * pitch["voicing"]
        phonetic: dict[str, float] = {}
        if self.phoneme_head is not None:
            assert quantized.semantic is not None
            phoneme_loss, phoneme_accuracy = self.phoneme_loss(quantized.semantic)
            loss = loss + cfg.phoneme_weight * phoneme_loss
            phonetic = {"phoneme": phoneme_loss.item(), "phoneme_acc": phoneme_accuracy}
        adversarial: dict[str, float] = {}
        # The real audio's scores serve both the codec's feature targets and, after its step, the
        # discriminator's own loss: the discriminator does not change in between.
        real_scores = self.discriminator(audio) if self.discriminator is not None else None
        if real_scores is not None and self.step >= cfg.adversarial_after:
            fooling, matching = generator_losses(self.discriminator, real_scores, recon)
            loss = loss + cfg.adversarial_weight * fooling + cfg.feature_weight * matching
            adversarial = {"adv": fooling.item(), "feat": matching.item()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if real_scores is not None:
            adversarial["disc"] = self.train_discriminator(real_scores, recon)
        self.step += 1
        self.seen += audio.shape[0] * audio.shape[-1] / cfg.model.sample_rate
        return {"loss": loss.item(), "l1": l1.item(), "stft": stft.item(), "mel": mel.item(),
                "commit": quantized.commitment_loss.item(), "codebooks": quantized.codes.shape[1],
                "restarted": float(quantized.metrics.get("restarted", torch.zeros(())).item()),
                "grad_norm": grad_norm.item(), "lr": lr, **phonetic, **adversarial,
                **{name: value.item() for name, value in pitch.items()}}

    def _semantic_step(self, audio: torch.Tensor, lr: float) -> dict[str, float]:
        """One ``semantic_only`` step on ``audio`` [B, 1, T]: phoneme cross-entropy + commitment.

        The frozen semantic codebook quantizes the encoder's latent; the straight-through estimator passes the
        classifier's gradient to the latent, and the commitment term keeps the latent near the code it
        chose, so the codes stay those the codebook (and the decoder reading it) already knows."""
        cfg = self.config
        rvq = self.model.quantizer.rvq_first
        assert self.model.semantic_encoder is not None and rvq.n_q == 1, "one semantic codebook"
        latent = self.model.semantic_encoder(audio)  # [B, D_in, frames]
        if self.step < cfg.head_warmup_steps:
            latent = latent.detach()  # only the classifier learns
        batch = latent.shape[0]
        flat = rvq._project_in(latent)  # [B * frames, D]
        codebook = rvq.codebooks[0]
        vectors = codebook.lookup(codebook.nearest(flat.detach()))  # [B * frames, D], no gradient
        commitment = F.mse_loss(flat, vectors)
        quantized = flat + (vectors - flat).detach()  # straight-through estimator
        semantic = rvq._project_out(quantized, batch)  # [B, D_out, frames]
        phoneme_loss, phoneme_accuracy = self.phoneme_loss(semantic)
        loss = cfg.phoneme_weight * phoneme_loss + cfg.commit_weight * commitment
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.seen += audio.shape[0] * audio.shape[-1] / cfg.model.sample_rate
        return {"loss": loss.item(), "commit": commitment.item(), "phoneme": phoneme_loss.item(),
                "phoneme_acc": phoneme_accuracy, "grad_norm": grad_norm.item(), "lr": lr}

    def train_discriminator(self, real_scores: Scores, recon: torch.Tensor) -> float:
        """One discriminator step on the real audio's ``real_scores`` against the codec's ``recon`` [B, 1, T];
        returns its loss. Discards the gradients the codec's adversarial terms left on the discriminator."""
        assert self.discriminator is not None
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss = discriminator_loss(self.discriminator, real_scores, recon)
        loss.backward()
        self.discriminator_optimizer.step()
        return loss.item()

    # ---- phoneme targets ----

    def _setup_phonemes(self, inventory: PhonemeInventory) -> None:
        """The classifier and each utterance's phoneme timeline, for ``inventory``'s classes."""
        cfg = self.config
        if not any(row.get("phonemes") for row in self.sampler.corpus.rows):
            raise ValueError("phoneme_weight > 0 needs manifests with phonemes (made by `delaykit data synth`)")
        self.inventory = inventory
        self.timelines = [PhonemeTimeline(row.get("phonemes", ()), inventory) for row in self.sampler.corpus.rows]
        dimension = cfg.model.quantizer.output_dimension
        self.phoneme_head = nn.Linear(dimension, cfg.phoneme_slots * len(inventory))

    def phoneme_targets(self, frames: int) -> torch.Tensor:
        """Targets [B, frames, slots] of the sampler's latest batch."""
        cfg = self.config
        rate = cfg.model.sample_rate
        frame_seconds = cfg.model.frame_size / rate
        # A crop played ``speed`` times as fast holds ``frame_seconds * speed`` of its utterance in each frame.
        targets = [slot_targets(self.timelines[crop.index], crop.start / rate, frames, frame_seconds * crop.speed,
                                cfg.phoneme_slots, crop.length / rate, cfg.phoneme_lookahead_frames)
                   for crop in self.sampler.last_crops]
        return torch.from_numpy(np.stack(targets))

    def phoneme_loss(self, semantic: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy of the phoneme classifier on the quantized semantic latent [B, D, frames], and its
        accuracy."""
        assert self.phoneme_head is not None
        semantic = semantic.transpose(1, 2)  # [B, frames, D]
        batch, frames, _ = semantic.shape
        logits = self.phoneme_head(semantic).view(batch, frames, self.config.phoneme_slots, -1)  # [B, F, S, P]
        targets = self.phoneme_targets(frames)  # [B, F, S]
        valid = targets != IGNORE
        if not bool(valid.any()):
            return logits.sum() * 0.0, 0.0
        loss = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=IGNORE)
        accuracy = (logits.argmax(-1) == targets)[valid].float().mean().item()
        return loss, accuracy

    def quantize_share(self, step: int) -> float:
        """Probability that an item is decoded from its quantized latent at ``step``."""
        cfg = self.config
        if step < cfg.quantize_after:
            return 0.0
        return cfg.quantize_prob * min(1.0, (step - cfg.quantize_after + 1) / max(cfg.quantize_ramp, 1))

    def _forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """``CodecModel.forward`` up to the latent to decode, except that a random part of the batch skips
        quantization: (latent [B, D, frames], quantizer output).

        Decoding only quantized latents from the start lets the encoder collapse to near-constant codes (the
        straight-through gradient asks for changes the codes do not show); letting some items through
        unquantized keeps the autoencoder learning while the codebooks follow the latents.
        """
        latent, semantic = self.model.encode_latents(audio)  # [B, D, frames] each (semantic: or None)
        quantized = self.model.quantizer(latent, n_q=self.config.codebooks, semantic_input=semantic)
        keep = torch.rand(latent.shape[0]) < self.quantize_share(self.step)  # [B]
        if semantic is not None:  # the semantic codes' share is always quantized: the rest has no stand-in for it
            assert quantized.semantic is not None
            latent = latent + quantized.semantic
        mixed = torch.where(keep[:, None, None], quantized.quantized, latent)  # [B, D, frames]
        return mixed, quantized

    def progress(self, row: dict) -> str:
        phonemes = f" phoneme {row['phoneme']:.3f} acc {row['phoneme_acc']:.3f}" if "phoneme" in row else ""
        pitch = f" f0 {row['f0']:.3f} voicing {row['voicing']:.3f}" if "f0" in row else ""
        adversarial = f" adv {row['adv']:.3f} feat {row['feat']:.3f}" if "adv" in row else ""
        adversarial += f" disc {row['disc']:.3f}" if "disc" in row else ""
        if "mel" not in row:  # semantic_only
            return (f"loss {row['loss']:.4f} (commit {row['commit']:.4f}{phonemes}) lr {row['lr']:.2e}, "
                    f"{row['seen'] / 3600:.2f} h seen")
        return (f"loss {row['loss']:.4f} (mel {row['mel']:.3f} stft {row['stft']:.3f} l1 {row['l1']:.4f} "
                f"commit {row['commit']:.4f}{phonemes}{pitch}{adversarial}) lr {row['lr']:.2e}, {row['seen'] / 3600:.2f} h seen")

    # ---- checkpoints ----

    def model_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state(),
            "dropout_rng": self.model.quantizer._dropout_rng.getstate(),
            # Dead-code check countdowns live outside the state dict; without them a resumed run drifts.
            "steps_to_check": [cb._steps_to_check for cb in _codebooks(self.model)],
            "config": self.config.to_dict(),
            **({"phoneme_head": self.phoneme_head.state_dict(), "phonemes": self.inventory.names}
               if self.phoneme_head is not None else {}),
            **({"discriminator": self.discriminator.state_dict(),
                "discriminator_optimizer": self.discriminator_optimizer.state_dict()}
               if self.discriminator is not None else {}),
        }

    def load_model_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.set_state(state["sampler"])
        self.model.quantizer._dropout_rng.setstate(state["dropout_rng"])
        for codebook, count in zip(_codebooks(self.model), state["steps_to_check"], strict=True):
            codebook._steps_to_check = count
        if self.phoneme_head is not None:
            if state.get("phonemes") != self.inventory.names:
                raise ValueError("the data's phonemes differ from those this run was trained on: resume with "
                                 "the manifests it started with")
            self.phoneme_head.load_state_dict(state["phoneme_head"])
        if self.discriminator is not None:
            if "discriminator" not in state:  # adversarial terms turned on for a run that had none
                print("the checkpoint has no discriminator: a fresh one starts", file=self.log, flush=True)
                return
            self.discriminator.load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])


def _keep_as_loaded(modules: tp.Iterable[nn.Module]) -> None:
    """No gradients, and eval mode, which is what stops a quantizer's EMA codebook updates and dead-code
    restarts."""
    for module in modules:
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def _continue_from(model: CodecModel, state: dict[str, torch.Tensor]) -> None:
    """Load a trained codec's weights into ``model``. A model that adds a semantic encoder to a codec without
    one keeps its fresh encoder, and its semantic codebooks start over (k-means on the new latents); a model
    whose decoder is of another kind (spectral instead of SEANet) keeps its fresh decoder, except that a
    harmonic decoder takes a spectral decoder's trunk, and both its envelopes start as that decoder's
    magnitudes (see :func:`_harmonic_from_spectral`). A model whose acoustic encoder is of another kind (log-mel
    instead of SEANet, or back) keeps its fresh encoder, and its acoustic codebooks start over (k-means on the
    new latents); the semantic encoder and codebook load as they were, so the first codebook's codes stay."""
    state = dict(state)
    # A log-mel encoder's state has its filterbank buffer ``encoder.mel``; a SEANet encoder's has none.
    fresh_encoder = isinstance(model.encoder, SemanticEncoder) != ("encoder.mel" in state)
    acoustic_side = ("encoder.", "quantizer.rvq_rest.vq.layers.")  # the encoder and the acoustic codebooks
    if fresh_encoder:
        state = {key: value for key, value in state.items() if not key.startswith(acoustic_side)}
    has_spectral_head = any(key.startswith("decoder.head.") for key in state)
    has_harmonic_head = any(key.startswith("decoder.harmonic_head.") for key in state)
    adopted = isinstance(model.decoder, HarmonicDecoder) and has_spectral_head
    if adopted:
        _harmonic_from_spectral(model.decoder, state.pop("decoder.head.weight"), state.pop("decoder.head.bias"))
    if isinstance(model.decoder, HarmonicDecoder):
        fresh_decoder = not (has_harmonic_head or adopted)
    else:
        fresh_decoder = isinstance(model.decoder, SpectralDecoder) != has_spectral_head or has_harmonic_head
    if fresh_decoder:
        state = {key: value for key, value in state.items() if not key.startswith("decoder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_heads = ("decoder.f0_head.", "decoder.harmonic_head.", "decoder.noise_head.")
    added = [key for key in missing if key.startswith("semantic_encoder.")
             or (fresh_decoder and key.startswith("decoder.")) or (adopted and key.startswith(new_heads))
             or (fresh_encoder and key.startswith(acoustic_side))]
    if unexpected or len(added) != len(missing):
        raise ValueError(f"the checkpoint does not fit this codec: missing {sorted(set(missing) - set(added))}, "
                         f"unexpected {sorted(unexpected)}")
    if any(key.startswith("semantic_encoder.") for key in added):
        for codebook in model.quantizer.rvq_first.codebooks:
            codebook._initialized.zero_()
    if fresh_encoder:
        for codebook in model.quantizer.rvq_rest.codebooks:
            codebook._initialized.zero_()


@torch.no_grad()
def _harmonic_from_spectral(decoder: HarmonicDecoder, head_weight: torch.Tensor, head_bias: torch.Tensor) -> None:
    """Start a harmonic decoder's envelopes from a spectral decoder's head ``[2 * bins, C]`` (log magnitudes,
    then phases): the noise part makes that decoder's magnitudes at half power, the harmonic part as much at
    its harmonics, and the F0 head starts flat at ``f0_start`` and voiced."""
    bins = decoder.config.bins
    decoder.noise_head.weight.copy_(head_weight[:bins])
    decoder.noise_head.bias.copy_(head_bias[:bins] - 0.35)
    decoder.harmonic_head.weight.copy_(head_weight[:bins])
    decoder.harmonic_head.bias.copy_(head_bias[:bins] - decoder.pulse_gain)
    decoder.f0_head.weight.zero_()
    decoder.f0_head.bias.zero_()


def pitch_targets(audio: torch.Tensor, steps: int, sample_rate: int, hop: int, window: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN F0 in Hz of ``audio`` [B, 1, T] for ``steps`` decoder steps, step ``t`` covering samples
    ``[t * hop, t * hop + window)`` as the decoder's frames do: (F0 ``[B, steps]``, NaN where unvoiced or
    unknown; ``[steps]`` bool, whether a step has a whole frame of audio to measure, which the last ones have
    not)."""
    config = PitchConfig(frame_seconds=window / sample_rate, hop_seconds=hop / sample_rate)
    track = f0_track(audio[:, 0].detach(), sample_rate, config)[:, :steps]  # [B, frames <= steps]
    known = torch.arange(steps) < track.shape[1]  # [steps]
    return F.pad(track, (0, steps - track.shape[1]), value=float("nan")), known


def _codec_state(source: str) -> dict[str, torch.Tensor]:
    """The codec weights (fp32) of a checkpoint name or directory (``init_from``)."""
    from .evaluate import load_codec_checkpoint

    return {k: v.float() if v.is_floating_point() else v
            for k, v in load_codec_checkpoint(source).state_dict().items()}


# ---------------------------------------------------------------------------------------------------------
# Export


def load_run(run_dir: str | os.PathLike) -> tuple[CodecConfig, dict[str, torch.Tensor], dict]:
    """(codec config, codec state dict, run summary) of a run directory's latest checkpoint."""
    state = torch.load(Path(run_dir) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    config = CodecTrainConfig.from_dict(state["config"])
    summary = {"step": state["step"], "audio_hours": state["seen"] / 3600,
               "train_hours": state["train_seconds"] / 3600}
    model = CodecModel(config.model)
    if config.weight_norm:
        add_weight_norm(model)
    model.load_state_dict(state["model"], strict=True)
    return config.model, fold_weight_norm(model).state_dict(), summary


DECODE_PATH = ("upsample.", "decoder_transformer.", "decoder.")  # state-dict prefixes after the codes


def export_codec(run_dir: str | os.PathLike, target: str | os.PathLike, fp16: bool = False,
                 fp16_decoder: bool = False, fp16_semantic: bool = False) -> Path:
    """Write the run's codec as a codec-only checkpoint directory (``config.json`` + ``codec.safetensors``).

    ``fp16`` stores every weight in float16; ``fp16_decoder`` only the decode path, so that encoding (run in
    float32 after loading, as always) gives exactly the codes of the float32 codec; ``fp16_semantic`` also the
    semantic encoder (a ``semantic_only`` run's, which a model then carries as a float16 codec patch: the codes
    are those of the rounded weights)."""
    from ..checkpoints import save_checkpoint

    codec_config, state, _ = load_run(run_dir)
    codec_config = dataclasses.replace(
        codec_config, quantizer=dataclasses.replace(codec_config.quantizer, q_dropout=False))
    halved = DECODE_PATH + (("semantic_encoder.",) if fp16_semantic else ())
    if fp16 or fp16_decoder or fp16_semantic:
        state = {k: v.half() if v.is_floating_point() and (fp16 or k.startswith(halved)) else v
                 for k, v in state.items()}
    config = {"codec_config": codec_config.to_dict(), "moshi_name": None, "tokenizer_name": None,
              "mimi_name": "codec.safetensors"}
    save_checkpoint(target, config, lm_state=None, codec_state=state)
    return Path(target)
