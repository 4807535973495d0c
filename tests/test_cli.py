"""Tests of the command line: help and version answer, errors print one line, importing it stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from click.testing import CliRunner

from delaykit import __version__
from delaykit.checkpoints import save_checkpoint
from delaykit.cli import main


def test_help_and_version() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "inspect" in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_inspect_prints_checkpoint_json(tmp_path) -> None:
    save_checkpoint(tmp_path / "ckpt", {"dim": 4}, None, {"w": torch.zeros(2)})
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["lm_weights"] is None and info["codec_weights"].endswith("codec.safetensors")


def test_delaykit_errors_print_one_line_without_traceback(tmp_path) -> None:
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'nothing'}: no such checkpoint directory"
    assert "Traceback" not in result.output


def test_importing_the_cli_does_not_import_torch() -> None:
    code = (
        "import sys, delaykit.cli; "
        "heavy = [m for m in ('torch', 'gradio', 'sentencepiece', 'safetensors', 'soundfile') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by delaykit.cli: {out.stdout.strip()}"


def test_console_help_runs_in_a_subprocess() -> None:
    out = subprocess.run([sys.executable, "-m", "delaykit.cli", "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "delaykit" in out.stdout
