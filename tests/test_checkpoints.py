"""Tests of delaykit.checkpoints: save/resolve round trip, and that every failure names the right file."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import save_file

from delaykit import checkpoints
from delaykit.checkpoints import (
    CheckpointFiles,
    check_safetensors,
    load_safetensors,
    resolve_checkpoint,
    save_checkpoint,
)
from delaykit.errors import CheckpointError


def lm_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(10, 4, generator=gen)
    return {"text_emb.weight": emb, "out.weight": emb, "norm.alpha": torch.ones(1, 1, 4)}  # tied weights


def codec_state() -> dict[str, torch.Tensor]:
    return {"quantizer.embedding_sum": torch.arange(12.0).reshape(3, 4), "usage": torch.ones(3)}


@pytest.fixture
def tokenizer_file(tmp_path):
    path = tmp_path / "src" / "tok.model"
    path.parent.mkdir()
    path.write_bytes(b"not checked at this layer")
    return path


@pytest.fixture
def saved(tmp_path, tokenizer_file) -> CheckpointFiles:
    config = {"dim": 4, "text_card": 10, "model_type": "stt", "stt_config": {"audio_delay_seconds": 0.5}}
    return save_checkpoint(tmp_path / "ckpt", config, lm_state(), codec_state(), tokenizer_file)


def test_save_then_resolve_round_trip(saved: CheckpointFiles, tmp_path) -> None:
    directory = tmp_path / "ckpt"
    assert sorted(p.name for p in directory.iterdir()) == [
        "codec.safetensors", "config.json", "model.safetensors", "tok.model"]
    files = resolve_checkpoint(directory)
    assert files.directory == directory
    assert files.lm_weights == directory / "model.safetensors"
    assert files.codec_weights == directory / "codec.safetensors"
    assert files.tokenizer == directory / "tok.model"
    assert files.model_type == "stt"
    assert files.lm_config == {"dim": 4, "text_card": 10}
    assert files.stt_config == {"audio_delay_seconds": 0.5}
    lm = load_safetensors(files.lm_weights)
    for key, value in lm_state().items():
        torch.testing.assert_close(lm[key], value)
    torch.testing.assert_close(load_safetensors(files.codec_weights)["usage"], torch.ones(3))
    assert resolve_checkpoint(directory / "config.json").directory == directory
    assert json.loads(json.dumps(files.describe()))["lm_weights"] == str(directory / "model.safetensors")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left


def test_codec_only_checkpoint(tmp_path) -> None:
    files = save_checkpoint(tmp_path / "codec", {"model_type": "codec"}, None, codec_state())
    assert files.lm_weights is None and files.tokenizer is None
    assert files.codec_weights.name == "codec.safetensors"
    config = json.loads((tmp_path / "codec" / "config.json").read_text())
    assert config["moshi_name"] is None and config["tokenizer_name"] is None


def test_kyutai_defaults_for_missing_meta_keys(tmp_path) -> None:
    directory = tmp_path / "kyutai"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"dim": 8}))
    save_file(lm_state() | {"out.weight": torch.zeros(10, 4)}, str(directory / "model.safetensors"))
    save_file(codec_state(), str(directory / checkpoints.KYUTAI_CODEC_NAME))
    with pytest.raises(CheckpointError, match=r"tokenizer_spm_32k_3\.model: tokenizer file not found"):
        resolve_checkpoint(directory)
    (directory / checkpoints.KYUTAI_TOKENIZER_NAME).write_bytes(b"x")
    files = resolve_checkpoint(str(directory))
    assert files.codec_weights.name == checkpoints.KYUTAI_CODEC_NAME
    assert files.model_type == "moshi"


def test_overwrite_keeps_other_files_and_failed_save_changes_nothing(saved, tmp_path) -> None:
    directory = saved.directory
    (directory / "README.md").write_text("model card")
    before = (directory / "model.safetensors").read_bytes()
    with pytest.raises(AttributeError):
        save_checkpoint(directory, {"dim": 5}, {"bad": "not a tensor"}, codec_state())
    assert (directory / "model.safetensors").read_bytes() == before
    assert json.loads((directory / "config.json").read_text())["dim"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    new_state = {"w": torch.full((2,), 7.0)}
    files = save_checkpoint(directory, {"dim": 5}, new_state, codec_state())
    assert (directory / "README.md").read_text() == "model card"
    assert files.config["dim"] == 5 and files.tokenizer is None
    torch.testing.assert_close(load_safetensors(files.lm_weights)["w"], new_state["w"])
    with pytest.raises(CheckpointError, match="must end in .safetensors"):
        save_checkpoint(tmp_path / "other", {"moshi_name": "model.pt"}, new_state, None)
    assert not (tmp_path / "other").exists()


def test_missing_files_are_named(saved) -> None:
    directory = saved.directory
    (directory / "codec.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"codec\.safetensors: weights file not found"):
        resolve_checkpoint(directory)
    (directory / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"ckpt/config\.json: missing"):
        resolve_checkpoint(directory)
    with pytest.raises(CheckpointError, match=r"nowhere: no such checkpoint directory"):
        resolve_checkpoint(directory / "nowhere")


def test_bad_config_is_named(saved) -> None:
    config_path = saved.directory / "config.json"
    config_path.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not a readable JSON file"):
        resolve_checkpoint(saved.directory)
    config_path.write_text(json.dumps(saved.config | {"moshi_name": "../elsewhere.safetensors"}))
    with pytest.raises(CheckpointError, match=r"config\.json: moshi_name must be a file name inside"):
        resolve_checkpoint(saved.directory)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "trailing", "empty"])
def test_corrupt_safetensors_are_named(saved, damage: str) -> None:
    path = saved.lm_weights
    data = path.read_bytes()
    corrupted = {
        "truncate": data[: len(data) - 7],
        "garbage": b"\x13\x00\x00\x00\x00\x00\x00\x00{this is not json}!",
        "trailing": data + b"\x00" * 4,
        "empty": b"",
    }[damage]
    path.write_bytes(corrupted)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt"):
        resolve_checkpoint(saved.directory)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt"):
        load_safetensors(path)


def test_pickle_checkpoints_are_refused(saved, tmp_path) -> None:
    pt_file = tmp_path / "weights.pt"
    torch.save(lm_state(), pt_file)
    with pytest.raises(CheckpointError, match=r"weights\.pt: pickle checkpoints \(\.pt\) are refused"):
        resolve_checkpoint(pt_file)
    with pytest.raises(CheckpointError, match=r"weights\.pt: pickle"):
        load_safetensors(pt_file)
    config_path = saved.directory / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"moshi_name": "model.bin"}))
    with pytest.raises(CheckpointError, match=r"model\.bin: pickle checkpoints"):
        resolve_checkpoint(saved.directory)
    config_path.write_text(json.dumps(config))
    torch.save(lm_state(), saved.lm_weights)  # a torch.save archive under a .safetensors name
    with pytest.raises(CheckpointError, match=r"model\.safetensors: this is a pickle/torch\.save file"):
        resolve_checkpoint(saved.directory)


def test_check_safetensors_returns_header(saved) -> None:
    header = check_safetensors(saved.codec_weights)
    assert set(header) - {"__metadata__"} == {"quantizer.embedding_sum", "usage"}


def test_hub_unavailable_without_huggingface_hub(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    with pytest.raises(CheckpointError, match=r"kyutai/stt-1b-en_fr: .*hub is unavailable.*not installed"):
        resolve_checkpoint("kyutai/stt-1b-en_fr")


def test_hub_unavailable_offline(monkeypatch, tmp_path) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"delaykit-tests/no-such-model: .*hub is unavailable") as info:
        resolve_checkpoint("delaykit-tests/no-such-model")
    assert "config.json" in str(info.value) and "local checkpoint directory" in str(info.value)


def test_local_directory_wins_over_repo_id(saved, monkeypatch) -> None:
    monkeypatch.chdir(saved.directory.parent)
    assert resolve_checkpoint("ckpt").directory.name == "ckpt"


def test_default_checkpoint(monkeypatch, tmp_path, saved) -> None:
    monkeypatch.setattr(checkpoints, "default_checkpoint_dir", lambda name="default": tmp_path / "absent")
    with pytest.raises(CheckpointError, match=r"default checkpoint is not installed: .*absent/config\.json"):
        resolve_checkpoint("default")
    monkeypatch.setattr(checkpoints, "default_checkpoint_dir", lambda name="default": saved.directory)
    assert resolve_checkpoint("default").source == "default"


def test_saved_checkpoints_are_readable_by_others(tmp_path) -> None:
    import os
    import stat

    import torch

    from delaykit.checkpoints import save_checkpoint

    old = os.umask(0o022)
    try:
        files = save_checkpoint(tmp_path / "ckpt", {"model_type": "codec"}, None, {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o755
    assert stat.S_IMODE(files.codec_weights.stat().st_mode) & 0o044 == 0o044
