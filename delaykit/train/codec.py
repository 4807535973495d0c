"""Codec training on CPU: random crops, spectral losses, EMA codebooks, resumable checkpoints, export.

One step draws a batch of 1-2 s crops (a whole number of codec frames) and runs the codec's encode ->
quantize -> decode path in train mode: the quantizer updates its EMA codebooks, restarts dead codes and,
with ``q_dropout``, picks a random number of acoustic codebooks; a share of the batch (``quantize_prob``,
after an unquantized warm-up) is decoded from quantized latents, the rest from unquantized ones (see
``CodecTrainer._forward``). It minimises::

    l1_weight * |x - y|  +  stft_weight * multi-resolution STFT  +  mel_weight * multi-resolution log-mel
                         +  commit_weight * commitment

with AdamW in fp32, starting from :func:`signal_preserving_init`. A run directory holds ``config.json`` (the
:class:`CodecTrainConfig`), ``checkpoint.pt`` (model, optimizer, step, every RNG state and the data
sampler's position; written atomically every ``checkpoint_minutes`` and at the end) and ``metrics.jsonl``. ``resume=True`` continues a killed run exactly
where its last checkpoint left it. :func:`export_codec` writes a codec-only checkpoint directory that
:mod:`delaykit.checkpoints` reads: ``config.json`` with ``"codec_config"`` and ``codec.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ..codec.model import CodecConfig, CodecModel
from ..codec.quantizer import QuantizerConfig, QuantizerOutput
from ..codec.seanet import SeanetConfig
from ..data.crops import AudioCorpus, CropConfig, CropSampler
from ..transformer import TransformerConfig
from .losses import MultiResolutionSpectralLoss, SpectralLossConfig

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"


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
            if "gain_db" in crops:
                crops["gain_db"] = tuple(crops["gain_db"])
            kwargs["crops"] = CropConfig(**crops)
        if "spectral" in data:
            spectral = dict(data.pop("spectral"))
            for key in ("windows", "mel_windows"):
                if key in spectral:
                    spectral[key] = tuple(spectral[key])
            kwargs["spectral"] = SpectralLossConfig(**spectral)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**kwargs, **data)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: tp.Iterable[str] = ()) -> CodecTrainConfig:
        """Defaults, updated from a JSON/TOML file, then from ``KEY=VALUE`` overrides (dotted keys nest;
        values parse as JSON when they can, e.g. ``crops.batch_size=16``, ``model.seanet.n_filters=24``)."""
        data = cls().to_dict()
        if path is not None:
            text = Path(path).read_text(encoding="utf-8")
            if str(path).endswith(".toml"):
                import tomllib

                _merge(data, tomllib.loads(text))
            else:
                _merge(data, json.loads(text))
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not KEY=VALUE")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            node = data
            *parents, leaf = key.strip().split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return cls.from_dict(data)


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


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


class CodecTrainer:
    """Owns the model, optimizer, data sampler and run directory of one codec training run."""

    def __init__(self, config: CodecTrainConfig, data: list[str | Path] | AudioCorpus,
                 run_dir: str | os.PathLike, resume: bool = False, log: tp.TextIO | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.log = log if log is not None else sys.stderr
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model = CodecModel(config.model).train()
        if config.signal_init:
            signal_preserving_init(self.model)
        if config.weight_norm:
            add_weight_norm(self.model)
        self.spectral = MultiResolutionSpectralLoss(config.spectral)
        decay, no_decay = [], []
        for param in self.model.parameters():
            (decay if param.dim() >= 2 else no_decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas)
        corpus = data if isinstance(data, AudioCorpus) else AudioCorpus.from_manifests(
            list(data), config.model.sample_rate)
        self.sampler = CropSampler(corpus, config.model.frame_size, config.crops, seed=config.seed)
        self.step = 0
        self.audio_seconds = 0.0  # audio seen over the whole run
        self.train_seconds = 0.0  # wall-clock training time over the whole run
        if resume:
            self.load_checkpoint()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    # ---- schedule and step ----

    def learning_rate(self, step: int) -> float:
        cfg = self.config
        warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        progress = min(1.0, step / max(cfg.decay_steps, 1))
        cosine = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr * warm * cosine

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        audio = self.sampler.next_batch()  # [B, 1, T]
        recon, quantized = self._forward(audio)  # [B, 1, T], codes [B, K, T / frame_size]
        stft, mel = self.spectral(recon, audio)
        l1 = F.l1_loss(recon, audio)
        loss = (cfg.l1_weight * l1 + cfg.stft_weight * stft + cfg.mel_weight * mel
                + cfg.commit_weight * quantized.commitment_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.audio_seconds += audio.shape[0] * audio.shape[-1] / cfg.model.sample_rate
        return {"loss": loss.item(), "l1": l1.item(), "stft": stft.item(), "mel": mel.item(),
                "commit": quantized.commitment_loss.item(), "codebooks": quantized.codes.shape[1],
                "restarted": float(quantized.metrics.get("restarted", torch.zeros(())).item()),
                "grad_norm": grad_norm.item(), "lr": lr}

    def quantize_share(self, step: int) -> float:
        """Probability that an item is decoded from its quantized latent at ``step``."""
        cfg = self.config
        if step < cfg.quantize_after:
            return 0.0
        return cfg.quantize_prob * min(1.0, (step - cfg.quantize_after + 1) / max(cfg.quantize_ramp, 1))

    def _forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """``CodecModel.forward``, except that a random part of the batch skips quantization.

        Decoding only quantized latents from the start lets the encoder collapse to near-constant codes (the
        straight-through gradient asks for changes the codes do not show); letting some items through
        unquantized keeps the autoencoder learning while the codebooks follow the latents.
        """
        latent = self.model.encode_latent(audio)  # [B, D, frames]
        quantized = self.model.quantizer(latent)
        keep = torch.rand(latent.shape[0]) < self.quantize_share(self.step)  # [B]
        mixed = torch.where(keep[:, None, None], quantized.quantized, latent)  # [B, D, frames]
        return self.model.decode_latent(mixed)[..., : audio.shape[-1]], quantized

    def fit(self) -> None:
        """Train until ``max_steps`` or the ``minutes`` budget, logging and checkpointing on the way."""
        cfg = self.config
        if cfg.max_steps is None and cfg.minutes is None:
            raise ValueError("set max_steps or minutes, or training never stops")
        start = time.monotonic()
        deadline = start + cfg.minutes * 60 if cfg.minutes is not None else math.inf
        last_save = start
        window: list[dict[str, float]] = []
        window_start, window_audio = start, self.audio_seconds
        with open(self.run_dir / METRICS_NAME, "a", encoding="utf-8") as metrics:
            while (cfg.max_steps is None or self.step < cfg.max_steps) and time.monotonic() < deadline:
                step_start = time.monotonic()
                window.append(self.train_step())
                self.train_seconds += time.monotonic() - step_start
                if self.step % cfg.log_every == 0:
                    now = time.monotonic()
                    row = {key: sum(m[key] for m in window) / len(window) for key in window[0]}
                    speed = (self.audio_seconds - window_audio) / max(now - window_start, 1e-9)
                    row.update(step=self.step, audio_hours=self.audio_seconds / 3600,
                               train_hours=self.train_seconds / 3600, audio_per_second=speed, time=time.time())
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    self._progress(row, now, deadline, (now - window_start) / len(window))
                    window, window_start, window_audio = [], now, self.audio_seconds
                if time.monotonic() - last_save > cfg.checkpoint_minutes * 60:
                    self.save_checkpoint()
                    last_save = time.monotonic()
        self.save_checkpoint()
        print(f"done: step {self.step}, {self.audio_seconds / 3600:.2f} h of audio seen", file=self.log, flush=True)

    def _progress(self, row: dict, now: float, deadline: float, step_seconds: float) -> None:
        remaining = deadline - now
        if self.config.max_steps is not None:
            remaining = min(remaining, (self.config.max_steps - self.step) * step_seconds)
        eta = "?" if math.isinf(remaining) else time.strftime("%H:%M:%S", time.gmtime(max(remaining, 0)))
        print(f"step {self.step} loss {row['loss']:.4f} (mel {row['mel']:.3f} stft {row['stft']:.3f} "
              f"l1 {row['l1']:.4f} commit {row['commit']:.4f}) lr {row['lr']:.2e} "
              f"{row['audio_per_second']:.1f} audio-s/s, {row['audio_hours']:.2f} h seen, ETA {eta}",
              file=self.log, flush=True)

    # ---- checkpoints ----

    def state(self) -> dict:
        return {
            "step": self.step,
            "audio_seconds": self.audio_seconds,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "sampler": self.sampler.state(),
            "dropout_rng": self.model.quantizer._dropout_rng.getstate(),
            # Dead-code check countdowns live outside the state dict; without them a resumed run drifts.
            "steps_to_check": [cb._steps_to_check for cb in _codebooks(self.model)],
            "config": self.config.to_dict(),
        }

    def save_checkpoint(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CHECKPOINT_NAME
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume from")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.sampler.set_state(state["sampler"])
        self.model.quantizer._dropout_rng.setstate(state["dropout_rng"])
        for codebook, count in zip(_codebooks(self.model), state["steps_to_check"], strict=True):
            codebook._steps_to_check = count
        self.step = state["step"]
        self.audio_seconds = state["audio_seconds"]
        self.train_seconds = state["train_seconds"]
        print(f"resumed {path} at step {self.step}", file=self.log, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Export


def load_run(run_dir: str | os.PathLike) -> tuple[CodecConfig, dict[str, torch.Tensor], dict]:
    """(codec config, codec state dict, run summary) of a run directory's latest checkpoint."""
    state = torch.load(Path(run_dir) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    config = CodecTrainConfig.from_dict(state["config"])
    summary = {"step": state["step"], "audio_hours": state["audio_seconds"] / 3600,
               "train_hours": state["train_seconds"] / 3600}
    model = CodecModel(config.model)
    if config.weight_norm:
        add_weight_norm(model)
    model.load_state_dict(state["model"], strict=True)
    return config.model, fold_weight_norm(model).state_dict(), summary


def export_codec(run_dir: str | os.PathLike, target: str | os.PathLike, fp16: bool = False) -> Path:
    """Write the run's codec as a codec-only checkpoint directory (``config.json`` + ``codec.safetensors``)."""
    from ..checkpoints import save_checkpoint

    codec_config, state, _ = load_run(run_dir)
    codec_config = dataclasses.replace(
        codec_config, quantizer=dataclasses.replace(codec_config.quantizer, q_dropout=False))
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    config = {"codec_config": codec_config.to_dict(), "moshi_name": None, "tokenizer_name": None,
              "mimi_name": "codec.safetensors"}
    save_checkpoint(target, config, lm_state=None, codec_state=state)
    return Path(target)
