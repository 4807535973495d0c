"""Checkpoint directories on disk: find them, check their files, read and write their weights.

A checkpoint is a directory in Kyutai's layout, so published models load as they are::

    config.json                 LM hyper-parameters plus meta keys (below)
    model.safetensors           LM weights            (config key ``moshi_name``)
    <codec>.safetensors         Mimi codec weights    (config key ``mimi_name``)
    <tokenizer>.model           SentencePiece model   (config key ``tokenizer_name``)

A shipped model may instead name the shipped checkpoint whose codec it uses (``"codec_from": "default"``, a
delaykit key; ``mimi_name`` is then ``null``), so that ``checkpoints/`` holds one codec, not one per model.
Such a model may also carry a few weights of its own that replace the shared codec's (``"codec_patch":
"codec_patch.safetensors"``): the default ASR model's own semantic encoder, retrained on more voices, reads
the shared codec's semantic codebook while the TTS model keeps the shared encoder. Or it may use another
shipped model's patch (``"codec_patch_from": "default-asr"``): the dialogue model hears its user through the
ASR model's front end without a second copy of it.

Meta keys missing from ``config.json`` take Kyutai's defaults (``model.safetensors``,
``tokenizer-e351c8d8-checkpoint125.safetensors``, ``tokenizer_spm_32k_3.model``); a key set to ``null``
says the checkpoint has no such part (e.g. a codec-only checkpoint has ``"moshi_name": null``).

Only safetensors weights are accepted: pickled ``.pt/.bin/.ckpt`` files can run code when loaded. This
module is the file layer; building models from a :class:`CheckpointFiles` belongs to the codec and LM code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError

if tp.TYPE_CHECKING:  # pragma: no cover
    import torch

CONFIG_NAME = "config.json"
LM_WEIGHTS_NAME = "model.safetensors"  # Kyutai's default `moshi_name`
KYUTAI_CODEC_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"  # Kyutai's default `mimi_name`
KYUTAI_TOKENIZER_NAME = "tokenizer_spm_32k_3.model"  # Kyutai's default `tokenizer_name`
CODEC_WEIGHTS_NAME = "codec.safetensors"  # what save_checkpoint names the codec when config has no mimi_name
CODEC_PATCH_NAME = "codec_patch.safetensors"  # what save_checkpoint names a codec patch when config has none
DEFAULT_NAME = "default"  # resolve_checkpoint("default") -> default_checkpoint_dir()

SAFETENSORS_SUFFIXES = frozenset({".safetensors", ".sft", ".sfts"})
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar"})
# Keys of config.json that describe files and use rather than LM hyper-parameters (as in Kyutai's loader).
META_KEYS = (
    "moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "lora_name", "model_type",
    "lm_gen_config", "tts_config", "stt_config", "dialogue_config", "model_id", "codec_config",
    "training",  # delaykit: how the model was trained (steps, data seen, the run config)
    "codec_from",  # delaykit: the shipped checkpoint whose codec this one uses
    "codec_patch",  # delaykit: weights of this checkpoint's own that replace some of that codec's
    "codec_patch_from",  # delaykit: the shipped checkpoint whose codec patch this one applies
)
CODEC_FROM_KEY = "codec_from"
CODEC_PATCH_KEY = "codec_patch"
CODEC_PATCH_FROM_KEY = "codec_patch_from"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


# The shipped checkpoints: the codec ("default") and one model per mode ("default-asr", ...).
DEFAULT_NAMES = (DEFAULT_NAME, "default-asr", "default-tts", "default-dialogue")


def default_checkpoint_dir(name: str = DEFAULT_NAME) -> Path:
    """Where a shipped checkpoint lives: ``<repository>/checkpoints/<name>`` (``default``: the codec)."""
    if name not in DEFAULT_NAMES:
        raise ValueError(f"{name!r} is not a shipped checkpoint; expected one of {DEFAULT_NAMES}")
    return Path(__file__).resolve().parent.parent / "checkpoints" / name


def default_name(mode: str) -> str:
    """The shipped checkpoint of ``mode`` (asr, tts, dialogue)."""
    return f"{DEFAULT_NAME}-{mode}"


@dataclass
class CheckpointFiles:
    """The files of one checkpoint, checked to exist and to be well-formed safetensors."""

    directory: Path  # the checkpoint directory (a hub snapshot directory for a repo id)
    config: dict  # config.json as read, meta keys included
    lm_weights: Path | None  # LM safetensors, None for a checkpoint without an LM
    codec_weights: Path | None  # codec safetensors, None for a checkpoint without a codec
    tokenizer: Path | None  # SentencePiece .model, None for a checkpoint without text
    lora_weights: Path | None = None  # optional LoRA safetensors (config key `lora_name`)
    codec_config: dict | None = None  # contents of `mimi_config_name`, when the config names one
    codec_patch: Path | None = None  # weights replacing some of the shared codec's (config key `codec_patch`)
    source: str = ""  # what was asked for: "default", a path or a hub repo id
    extra: dict = field(default_factory=dict)  # free room for loaders (e.g. resolved revision)

    @property
    def model_type(self) -> str:
        """Intended use: ``moshi`` (dialogue), ``stt``, ``tts`` or ``hibiki``."""
        return str(self.config.get("model_type", "moshi"))

    @property
    def lm_config(self) -> dict:
        """The LM hyper-parameters: config.json without the meta keys."""
        return {k: v for k, v in self.config.items() if k not in META_KEYS}

    @property
    def lm_gen_config(self) -> dict:
        return dict(self.config.get("lm_gen_config") or {})

    @property
    def stt_config(self) -> dict:
        return dict(self.config.get("stt_config") or {})

    @property
    def tts_config(self) -> dict:
        return dict(self.config.get("tts_config") or {})

    def describe(self) -> dict:
        """A JSON-ready summary (paths as strings), e.g. for ``delaykit inspect``."""
        def opt(p: Path | None) -> str | None:
            return None if p is None else str(p)

        return {
            "source": self.source,
            "directory": str(self.directory),
            "model_type": self.model_type,
            "lm_weights": opt(self.lm_weights),
            "codec_weights": opt(self.codec_weights),
            "tokenizer": opt(self.tokenizer),
            "lora_weights": opt(self.lora_weights),
            "codec_patch": opt(self.codec_patch),
            "lm_config": self.lm_config,
        }


# ---------------------------------------------------------------------------------------------------------
# Resolving


def resolve_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None) -> CheckpointFiles:
    """Find a checkpoint by ``"default"``, a local directory, or a Hugging Face repo id.

    A local path wins over a repo id of the same spelling. Every file the config names is checked (exists,
    not pickle, safetensors header consistent with the file size) so that errors surface here, naming the
    file, instead of deep inside model loading. Raises CheckpointError.
    """
    source = str(name_or_path)
    if source in DEFAULT_NAMES:
        directory = default_checkpoint_dir(source)
        if not (directory / CONFIG_NAME).is_file():
            raise CheckpointError(
                f"the {source} checkpoint is not installed: {directory / CONFIG_NAME} does not exist; "
                "pass a checkpoint directory instead"
            )
        return _resolve_local(directory, source)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if path.is_dir():
            return _resolve_local(path, source)
        if path.name == CONFIG_NAME:
            return _resolve_local(path.parent, source)
        _refuse_pickle(path)
        raise CheckpointError(f"{path}: expected a checkpoint directory (containing {CONFIG_NAME}), got a file")
    if isinstance(name_or_path, str) and _HUB_ID.match(source):
        return _resolve_hub(source, revision)
    raise CheckpointError(f"{path}: no such checkpoint directory")


def _resolve_local(directory: Path, source: str) -> CheckpointFiles:
    config = _read_config(directory / CONFIG_NAME)
    return _collect_files(config, lambda name: directory / name, directory, source)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint directory needs {CONFIG_NAME})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def _collect_files(
    config: dict, locate: tp.Callable[[str], Path], directory: Path, source: str
) -> CheckpointFiles:
    """Turn the config's file names into checked paths; ``locate`` maps a name to a local path."""
    config_path = directory / CONFIG_NAME

    def weights(key: str, default: str | None) -> Path | None:
        name = config.get(key, default)
        if name is None:
            return None
        path = locate(_check_name(name, key, config_path))
        check_safetensors(path)
        return path

    tokenizer_name = config.get("tokenizer_name", KYUTAI_TOKENIZER_NAME)
    tokenizer = None
    if tokenizer_name is not None:
        tokenizer = locate(_check_name(tokenizer_name, "tokenizer_name", config_path))
        _check_file(tokenizer, "tokenizer")
    codec_config = None
    if config.get("mimi_config_name"):
        name = _check_name(config["mimi_config_name"], "mimi_config_name", config_path)
        codec_config = _read_config(locate(name))
    if config.get(CODEC_FROM_KEY) is not None:
        codec_weights, codec_config = _shared_codec(config, config_path)
    else:
        codec_weights = weights("mimi_name", KYUTAI_CODEC_NAME)
        for key in (CODEC_PATCH_KEY, CODEC_PATCH_FROM_KEY):
            if config.get(key) is not None:
                raise CheckpointError(f"{config_path}: {key} patches a shared codec: it needs {CODEC_FROM_KEY}")
    codec_patch = weights(CODEC_PATCH_KEY, None)
    if config.get(CODEC_PATCH_FROM_KEY) is not None:
        if codec_patch is not None:
            raise CheckpointError(f"{config_path}: carries a codec patch ({CODEC_PATCH_KEY}) and uses another's "
                                  f"({CODEC_PATCH_FROM_KEY}); keep one")
        codec_patch = _shared_patch(config, config_path)
    return CheckpointFiles(
        directory=directory,
        config=config,
        lm_weights=weights("moshi_name", LM_WEIGHTS_NAME),
        codec_weights=codec_weights,
        tokenizer=tokenizer,
        lora_weights=weights("lora_name", None),
        codec_config=codec_config,
        codec_patch=codec_patch,
        source=source,
    )


def _shipped_name(config: dict, key: str, config_path: Path) -> str:
    """``config[key]``, checked to name a shipped checkpoint (what ``codec_from`` and ``codec_patch_from`` may)."""
    name = config[key]
    if name not in DEFAULT_NAMES:
        raise CheckpointError(f"{config_path}: {key} must name a shipped checkpoint ({', '.join(DEFAULT_NAMES)}), "
                              f"got {name!r}")
    return name


def _shared_codec(config: dict, config_path: Path) -> tuple[Path, dict | None]:
    """The codec weights and shape of the shipped checkpoint that ``config``'s ``codec_from`` names."""
    name = _shipped_name(config, CODEC_FROM_KEY, config_path)
    if config.get("mimi_name") is not None or config.get("mimi_config_name"):
        raise CheckpointError(f"{config_path}: names a codec of its own (mimi_name) and {CODEC_FROM_KEY} "
                              f"{name!r}; keep one")
    shared = resolve_checkpoint(name)
    if shared.codec_weights is None or shared.config.get(CODEC_FROM_KEY) is not None:
        raise CheckpointError(f"{config_path}: {CODEC_FROM_KEY} {name!r} must hold a codec of its own")
    return shared.codec_weights, shared.config.get("codec_config", shared.codec_config)


def _shared_patch(config: dict, config_path: Path) -> Path:
    """The codec patch of the shipped checkpoint that ``config``'s ``codec_patch_from`` names, which must
    patch the same shared codec as ``config`` and carry its patch itself."""
    name = _shipped_name(config, CODEC_PATCH_FROM_KEY, config_path)
    lender = resolve_checkpoint(name)
    if lender.config.get(CODEC_PATCH_KEY) is None or lender.config.get(CODEC_FROM_KEY) != config[CODEC_FROM_KEY]:
        raise CheckpointError(f"{config_path}: {CODEC_PATCH_FROM_KEY} {name!r} must carry a codec patch of "
                              f"the codec {config[CODEC_FROM_KEY]!r}")
    assert lender.codec_patch is not None
    return lender.codec_patch


def _check_name(name: tp.Any, key: str, config_path: Path | str = CONFIG_NAME) -> str:
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CheckpointError(f"{config_path}: {key} must be a file name inside the checkpoint, got {name!r}")
    return name


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file not found")


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints ({path.suffix}) are refused because loading them can run code; "
            "convert the weights to .safetensors"
        )


def check_safetensors(path: Path) -> dict:
    """Check that ``path`` is a complete safetensors file without loading it; return its header.

    Raises CheckpointError naming the file when it is missing, a pickle, truncated or not safetensors.
    """
    path = Path(path)
    _refuse_pickle(path)
    _check_file(path, "weights")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        header_len = int.from_bytes(head, "little")
        plausible = len(head) == 8 and header_len <= min(size - 8, _MAX_HEADER_BYTES)
        # A header length can start with these bytes too, so the magic only decides for implausible headers.
        if not plausible and (head[:2] == b"PK" or head[:1] == b"\x80"):
            raise CheckpointError(
                f"{path}: this is a pickle/torch.save file, not safetensors; pickle checkpoints are refused "
                "because loading them can run code"
            )
        if len(head) < 8:
            raise CheckpointError(f"{path}: corrupt safetensors file ({size} bytes, too short for a header)")
        if not plausible:
            raise CheckpointError(f"{path}: corrupt or truncated safetensors file (bad header length)")
        try:
            header = json.loads(f.read(header_len))
            if not isinstance(header, dict):
                raise TypeError("header is not a JSON object")
            data_end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors file (unreadable header: {exc})") from exc
    expected = 8 + header_len + data_end
    if size != expected:
        state = "truncated" if size < expected else "has trailing bytes"
        raise CheckpointError(f"{path}: corrupt safetensors file ({state}: {size} bytes, expected {expected})")
    return header


# ---------------------------------------------------------------------------------------------------------
# Hugging Face hub


def _hub_unavailable(repo_id: str, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{repo_id}: looks like a Hugging Face repo id, but the hub is unavailable ({reason}); "
        "pass a local checkpoint directory instead (no local directory of that name exists)"
    )


def _resolve_hub(repo_id: str, revision: str | None) -> CheckpointFiles:
    try:
        import huggingface_hub
    except ImportError:
        raise _hub_unavailable(repo_id, "huggingface_hub is not installed: pip install 'delaykit[hub]'") from None
    from huggingface_hub import errors as hub_errors

    missing_file = (hub_errors.EntryNotFoundError, getattr(hub_errors, "RemoteEntryNotFoundError", KeyError))
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}

    def download(name: str) -> Path:
        try:
            return Path(huggingface_hub.hf_hub_download(
                repo_id, name, revision=revision, local_files_only=offline))
        except hub_errors.LocalEntryNotFoundError:  # before EntryNotFoundError, its base class
            why = "HF_HUB_OFFLINE is set" if offline else "cannot reach huggingface.co"
            raise _hub_unavailable(repo_id, f"{why} and {name} is not in the local cache") from None
        except hub_errors.RepositoryNotFoundError:
            raise CheckpointError(f"{repo_id}: no such Hugging Face repository (or it is private)") from None
        except missing_file:
            raise CheckpointError(f"{repo_id}/{name}: file not found in the Hugging Face repository") from None
        except (OSError, hub_errors.HfHubHTTPError) as exc:
            raise _hub_unavailable(repo_id, f"{type(exc).__name__} while fetching {name}: {exc}") from None

    config_path = download(CONFIG_NAME)
    config = _read_config(config_path)
    return _collect_files(config, download, config_path.parent, repo_id)


# ---------------------------------------------------------------------------------------------------------
# Reading and writing weights


def load_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; CheckpointError naming the file if it is missing or corrupt."""
    from safetensors.torch import load_file

    path = Path(path)
    check_safetensors(path)
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"{path}: cannot load safetensors file ({exc})") from exc


def _prepare_state(state: tp.Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no shared storage, as safetensors requires."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        ident = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if ident in seen and t.numel() > 0:
            t = t.clone()  # tied weights: save a copy of each
        seen.add(ident)
        out[key] = t
    return out


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def save_checkpoint(
    directory: str | os.PathLike,
    config: dict,
    lm_state: tp.Mapping[str, torch.Tensor] | None,
    codec_state: tp.Mapping[str, torch.Tensor] | None,
    tokenizer_path: str | os.PathLike | None = None,
    codec_patch: tp.Mapping[str, torch.Tensor] | None = None,
) -> CheckpointFiles:
    """Write a checkpoint directory in the layout :func:`resolve_checkpoint` reads, and resolve it.

    The config's ``moshi_name`` / ``mimi_name`` name the weight files (defaults ``model.safetensors`` and
    ``codec.safetensors``); a part passed as None gets ``null`` in config.json. ``codec_patch`` (weights
    replacing some of the ``codec_from`` codec's) goes to ``codec_patch.safetensors``. ``tokenizer_path`` is
    copied in under its own name. Everything is first written into a temporary directory beside the target
    and moved into place only once complete (config.json last), so an error leaves no half-written file and
    leaves an existing checkpoint as it was; other files in the directory (a model card) are kept.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    config = dict(config)
    config["moshi_name"] = (config.get("moshi_name") or LM_WEIGHTS_NAME) if lm_state is not None else None
    config["mimi_name"] = (
        (config.get("mimi_name") or CODEC_WEIGHTS_NAME) if codec_state is not None else None
    )
    config["tokenizer_name"] = Path(tokenizer_path).name if tokenizer_path is not None else None
    parts = [(config["moshi_name"], lm_state, "moshi_name"), (config["mimi_name"], codec_state, "mimi_name")]
    if codec_patch is not None:
        config[CODEC_PATCH_KEY] = config.get(CODEC_PATCH_KEY) or CODEC_PATCH_NAME
        parts.append((config[CODEC_PATCH_KEY], codec_patch, CODEC_PATCH_KEY))
    for name, state, key in parts:
        if state is not None and Path(_check_name(name, key)).suffix not in SAFETENSORS_SUFFIXES:
            raise CheckpointError(f"{CONFIG_NAME}: {key} must end in .safetensors, got {name!r}")
    if tokenizer_path is not None and not Path(tokenizer_path).is_file():
        raise CheckpointError(f"{tokenizer_path}: tokenizer file not found")

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it owner-only; a checkpoint is for everyone to read
    try:
        for name, state, _ in parts:
            if state is not None:
                save_file(_prepare_state(state), str(staging / name), metadata={"format": "pt"})
        if tokenizer_path is not None:
            shutil.copyfile(tokenizer_path, staging / config["tokenizer_name"])
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for written_file in staging.iterdir():  # some writers create owner-only files
            written_file.chmod(0o666 & ~_umask())
        if not directory.exists():
            os.rename(staging, directory)  # atomic: the directory appears complete
        else:
            written = sorted(p.name for p in staging.iterdir() if p.name != CONFIG_NAME)
            for name in written + [CONFIG_NAME]:  # config last: it is what makes the rest visible
                os.replace(staging / name, directory / name)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return resolve_checkpoint(directory)
