"""Live audio with a stand-in sounddevice: `delaykit asr --mic` words equal offline recognition of the same
audio; the speakers get exactly the frames they are given (tts --play and dialogue --mic are tested with the
mode CLIs in test_cli_modes.py)."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest
from click.testing import CliRunner
from test_serve import asr_checkpoint, asr_model, offline_words, test_audio  # noqa: F401

from delaykit.cli import main
from delaykit.errors import AudioError
from delaykit.microphone import microphone_frames


def fake_sounddevice(signal: np.ndarray, opened: list) -> types.ModuleType:
    """A sounddevice whose InputStream plays ``signal`` into the callback, in odd-sized blocks, then silence."""

    class InputStream:
        def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
            opened.append({"samplerate": samplerate, "channels": channels, "dtype": dtype})
            self.callback, self.running = callback, False

        def __enter__(self):
            self.running = True
            self.thread = threading.Thread(target=self._play, daemon=True)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.running = False
            self.thread.join(5)

        def _play(self):
            padded = np.concatenate([signal, np.zeros(48_000, np.float32)])
            for start in range(0, padded.shape[0], 1000):
                if not self.running:
                    return
                self.callback(padded[start:start + 1000, None], 1000, None, None)

    class OutputStream:
        """Keeps what is played."""

        def __init__(self, samplerate, channels, dtype, device):
            opened.append({"output": samplerate, "channels": channels, "dtype": dtype})
            self.played: list[np.ndarray] = []

        def start(self):
            opened.append("started")

        def write(self, block):
            assert block.dtype == np.float32 and block.ndim == 2 and block.shape[1] == 1
            played.append(block[:, 0].copy())

        def stop(self):
            opened.append("stopped")

        def close(self):
            opened.append("closed")

    played: list[np.ndarray] = []
    module = types.ModuleType("sounddevice")
    module.InputStream = InputStream
    module.OutputStream = OutputStream
    module.played = played
    return module


def test_mic_words_equal_offline(asr_checkpoint, asr_model, monkeypatch, tmp_path):  # noqa: F811
    samples = test_audio(8, 2.0)
    opened: list = []
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(samples, opened))
    result = CliRunner().invoke(main, ["asr", "--mic", "--duration", "2.0", "--model", str(asr_checkpoint),
                                       "-f", "json"])
    assert result.exit_code == 0, result.output
    assert opened == [{"samplerate": 24_000, "channels": 1, "dtype": "float32"}]
    import json

    words = [w for segment in json.loads(result.stdout)["segments"] for w in segment["words"]]
    expected = offline_words(asr_model, samples)
    assert [w["word"].strip() for w in words] == [w["text"] for w in expected]
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(samples, []))
    out = tmp_path / "out"
    written = CliRunner().invoke(main, ["asr", "--mic", "--duration", "2.0", "--model", str(asr_checkpoint),
                                        "-o", str(out), "-f", "json"])
    assert written.exit_code == 0 and written.stdout == "", written.output
    assert (out / "microphone.json").read_text(encoding="utf-8") == result.stdout


def test_frames_are_whole_and_stop_at_the_duration(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(np.ones(10_000, np.float32), []))
    frames = list(microphone_frames(24_000, 1920, seconds=0.25))
    assert len(frames) == 4 and all(f.shape == (1920,) for f in frames)  # ceil(6000 / 1920) frames


def test_missing_sounddevice_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails
    with pytest.raises(AudioError, match="pip install 'delaykit\\[mic\\]'"):
        next(microphone_frames(24_000, 1920))


def test_speakers_play_frames_and_close(monkeypatch):
    from delaykit.microphone import Speakers

    opened: list = []
    module = fake_sounddevice(np.zeros(1, np.float32), opened)
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    with Speakers(24_000) as speakers:
        speakers.play(np.ones(1920))
        speakers.play(np.zeros(1920, np.float32))
    assert opened == [{"output": 24_000, "channels": 1, "dtype": "float32"}, "started", "stopped", "closed"]
    assert np.array_equal(np.concatenate(module.played), np.r_[np.ones(1920), np.zeros(1920)])
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(AudioError, match="--play needs sounddevice"):
        Speakers(24_000)
