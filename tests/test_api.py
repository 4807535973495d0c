"""``delaykit.load``: the checkpoint's type picks the mode, each mode runs, a wrong mode is a clear error."""

import subprocess
import sys

import numpy as np
import pytest
from test_asr import stt  # noqa: F401  (module fixture: tiny stt checkpoints)
from test_dialogue import checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)

import delaykit
from delaykit.api import Model
from delaykit.errors import CheckpointError


def test_an_asr_checkpoint_transcribes_and_refuses_other_modes(stt):  # noqa: F811
    engine, _ = stt[0]["published"]
    model = Model(engine)
    assert model.mode == "asr"
    audio = (0.3 * np.sin(np.arange(24000) * 2 * np.pi * 220 / 24000)).astype(np.float32)
    transcript = model.transcribe(audio)
    assert transcript.text == model.transcriber().transcribe(audio).text
    with pytest.raises(CheckpointError, match="asr checkpoint .* cannot do tts"):
        model.synthesize("hello")
    with pytest.raises(CheckpointError, match="cannot do dialogue"):
        model.conversation()


def test_load_a_dialogue_checkpoint_and_converse(checkpoint, tmp_path):  # noqa: F811
    model = delaykit.load(str(checkpoint[0]), device="cpu")
    assert model.mode == "dialogue" and model.sample_rate == 24000
    import soundfile

    soundfile.write(tmp_path / "user.wav", np.zeros(4 * 1920, dtype=np.float32), 24000)
    result = model.converse(tmp_path / "user.wav", tmp_path / "out.wav")
    stereo, rate = soundfile.read(tmp_path / "out.wav")
    assert rate == 24000 and stereo.shape == (4 * 1920, 2)
    assert result.output_path == tmp_path / "out.wav"
    with pytest.raises(CheckpointError, match="cannot do asr"):
        model.transcribe(np.zeros(1920, dtype=np.float32))


def test_importing_delaykit_stays_light():
    code = "import sys, delaykit; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
