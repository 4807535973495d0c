"""``delaykit.load``: the checkpoint's type picks the mode, each mode runs, a wrong mode is a clear error, and
a mode can be asked for where the checkpoint's streams allow it."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_asr import stt  # noqa: F401  (module fixture: tiny stt checkpoints)
from test_dialogue import checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)

import delaykit
import delaykit.api
from delaykit.api import Model
from delaykit.errors import CheckpointError
from delaykit.modes.tts import SynthesisOptions, Synthesizer

SCRIPT = ["the quick brown fox", "hello there"]  # two turns: main speaker, then the other one


def untyped_copy(directory, destination):
    """A copy of a checkpoint directory whose config.json has no model_type (read as "moshi")."""
    shutil.copytree(directory, destination)
    config = json.loads((destination / "config.json").read_text())
    del config["model_type"]
    (destination / "config.json").write_text(json.dumps(config))
    return destination


@pytest.fixture(scope="module")
def tts_checkpoint(tmp_path_factory):
    from test_tts import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("api-tts"))[0]


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


def test_load_a_tts_checkpoint_and_synthesize(tts_checkpoint, tmp_path):
    model = delaykit.load(str(tts_checkpoint), device="cpu")
    assert model.mode == "tts"
    options = SynthesisOptions.greedy()
    pcm, words = model.synthesize(SCRIPT, options)
    expected, expected_words = Synthesizer(model.engine, options).synthesize(SCRIPT)
    assert torch.equal(pcm, expected) and words == expected_words and pcm.abs().max() > 0
    stereo, _ = model.synthesize(SCRIPT, options, stereo=True)
    assert stereo.shape == (2, pcm.shape[0]) and torch.equal(stereo.sum(0), pcm)
    with pytest.raises(CheckpointError, match="cannot do asr"):
        model.transcriber()
    # without model_type the checkpoint claims dialogue; asked for, TTS gives the same speech
    untyped = untyped_copy(tts_checkpoint, tmp_path / "untyped-tts")
    assert delaykit.api.load(untyped, device="cpu").mode == "dialogue"
    forced = delaykit.api.load(untyped, device="cpu", mode="tts")
    assert forced.mode == "tts" and forced.checkpoint_mode == "dialogue"
    again, again_words = forced.synthesize(SCRIPT, options)
    assert torch.equal(again, pcm) and again_words == words


def test_a_mode_is_overridden_only_where_the_streams_allow_it(stt, checkpoint, tmp_path):  # noqa: F811
    engine, _ = stt[0]["published"]
    audio = (0.3 * np.sin(np.arange(24000) * 2 * np.pi * 220 / 24000)).astype(np.float32)
    untyped = untyped_copy(engine.files.directory, tmp_path / "untyped-stt")
    plain = delaykit.api.load(untyped, device="cpu")
    assert plain.mode == "dialogue"
    with pytest.raises(CheckpointError, match="cannot do asr"):
        plain.transcribe(audio)
    forced = delaykit.api.load(untyped, device="cpu", mode="asr")  # the stt_config still sets delay and prefix
    assert forced.mode == "asr" and forced.transcriber().layout == Model(engine).transcriber().layout
    assert forced.transcribe(audio) == Model(engine).transcribe(audio)
    asr = Model(engine)
    assert asr.with_mode("asr").mode_override is None
    with pytest.raises(CheckpointError, match="cannot do dialogue"):  # it generates no audio
        asr.with_mode("dialogue")
    with pytest.raises(CheckpointError, match="cannot do tts"):
        asr.with_mode("tts")
    with pytest.raises(CheckpointError, match="cannot do tts.*no tts_config"):  # a moshi model has no tts_config
        delaykit.api.load(checkpoint[0], device="cpu", mode="tts")
    with pytest.raises(ValueError, match="unknown mode"):
        asr.with_mode("translation")


def test_importing_delaykit_stays_light():
    code = "import sys, delaykit; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
