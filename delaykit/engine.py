"""Whole engines (codec + LM + tokenizer) built from checkpoint directories, and saved back to them.

One loader serves Kyutai's published checkpoints (moshiko/moshika, stt-1b-en_fr, stt-2.6b-en, tts-1.6b-en_fr,
Mimi) and delaykit's own: both are ``config.json`` + safetensors weights + a SentencePiece model, with the
official key names. delaykit writes its codec's shape into ``config.json`` under ``codec_config``; a checkpoint
without it uses the published Mimi configuration.
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import CheckpointFiles, load_safetensors, resolve_checkpoint, save_checkpoint
from .codec.model import CodecConfig, CodecModel
from .errors import CheckpointError
from .lm.model import LMConfig, LMModel
from .text import TextTokenizer

CODEC_CONFIG_KEY = "codec_config"


@dataclass
class Engine:
    """The models of one checkpoint; parts the checkpoint does not have are None."""

    codec: CodecModel | None
    lm: LMModel | None
    tokenizer: TextTokenizer | None
    files: CheckpointFiles | None = None
    model_type: str = "moshi"  # moshi (dialogue) | stt | tts | hibiki | codec

    @property
    def device(self) -> torch.device:
        model = self.lm if self.lm is not None else self.codec
        assert model is not None
        return next(model.parameters()).device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _build(module_factory: tp.Callable[[], torch.nn.Module], weights: Path, device: torch.device,
           dtype: torch.dtype, what: str) -> tp.Any:
    """Construct on the meta device, then load the weights strictly (no random init, no double memory)."""
    with torch.device("meta"):
        model = module_factory()
    state = load_safetensors(weights, device=str(device))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not fit the {what} described by config.json ({exc})") from exc
    return model.to(device).eval()  # buffers computed at construction (never saved) join the loaded weights


def apply_codec_patch(codec: CodecModel, patch: Path, device: torch.device) -> None:
    """Replace some of ``codec``'s weights with those of the ``patch`` safetensors file (in float32)."""
    own = codec.state_dict()
    computed = {name for name, _ in codec.named_buffers()} - own.keys()  # fixed transforms, never loaded
    state = {key: value for key, value in load_safetensors(patch, device=str(device)).items() if key not in computed}

    def fits(key: str, value: torch.Tensor) -> bool:
        return (key in own and own[key].shape == value.shape
                and own[key].dtype.is_floating_point == value.dtype.is_floating_point)

    unknown = sorted(key for key, value in state.items() if not fits(key, value))
    if unknown or not state:
        raise CheckpointError(f"{patch}: a codec patch must replace weights the codec has, with their shapes "
                              f"(does not fit: {unknown[:5]})")
    codec.load_state_dict({key: value.to(own[key].dtype) for key, value in state.items()}, strict=False)


def codec_config_for(files: CheckpointFiles) -> CodecConfig:
    """The codec shape of a checkpoint: delaykit's inline config, a named config file, or published Mimi."""
    if CODEC_CONFIG_KEY in files.config:
        return CodecConfig.from_dict(files.config[CODEC_CONFIG_KEY])
    if files.codec_config is not None:
        return CodecConfig.from_dict(files.codec_config)
    config = CodecConfig.mimi()
    lm = files.lm_config
    if lm.get("n_q"):  # codebooks per audio stream: those generated, or all for a listener (ASR)
        config.num_codebooks = lm.get("dep_q") or lm["n_q"]
    return config


def load_engine(name_or_path: str | Path = "default", device: str | torch.device = "auto",
                dtype: torch.dtype = torch.float32) -> Engine:
    """Load every part of a checkpoint (``default``, a directory, or a hub repo id when reachable)."""
    files = resolve_checkpoint(name_or_path)
    device = resolve_device(device)
    codec = lm = tokenizer = None
    if files.codec_weights is not None:
        codec_config = codec_config_for(files)
        codec = _build(lambda: CodecModel(codec_config), files.codec_weights, device, torch.float32, "codec")
        # The codec stays float32: its quantizer's nearest-code search needs the precision.
        if files.codec_patch is not None:
            apply_codec_patch(codec, files.codec_patch, device)
    if files.lm_weights is not None:
        try:
            lm_config = LMConfig.from_kyutai(files.lm_config)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{files.directory / 'config.json'}: {exc}") from exc
        lm = _build(lambda: LMModel(lm_config), files.lm_weights, device, dtype, "LM")
    if files.tokenizer is not None:
        tokenizer = TextTokenizer(files.tokenizer)
    model_type = files.model_type if lm is not None else "codec"
    return Engine(codec=codec, lm=lm, tokenizer=tokenizer, files=files, model_type=model_type)


def save_engine(directory: str | Path, codec: CodecModel | None, lm: LMModel | None,
                tokenizer_path: str | Path | None = None, model_type: str = "moshi",
                meta: dict | None = None, codec_patch: dict[str, torch.Tensor] | None = None) -> CheckpointFiles:
    """Write a checkpoint that ``load_engine`` (and Kyutai's layout readers, for the LM) can read;
    ``codec_patch``: weights replacing some of those of the codec that ``meta``'s ``codec_from`` names."""
    config: dict = dict(lm.config.to_kyutai()) if lm is not None else {}
    config["model_type"] = model_type if lm is not None else "codec"
    if codec is not None:
        config[CODEC_CONFIG_KEY] = codec.config.to_dict()
    config.update(meta or {})
    return save_checkpoint(directory, config,
                           lm.state_dict() if lm is not None else None,
                           codec.state_dict() if codec is not None else None,
                           tokenizer_path, codec_patch)
