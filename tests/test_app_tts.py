"""The TTS app: streamed chunks add up to the library's synthesis, then the WAV and the words; gradio_client."""

from __future__ import annotations

import numpy as np
import pytest

gradio = pytest.importorskip("gradio", reason="the apps are an optional extra: delaykit[app]")
pytest.importorskip("moshi")  # the fixture builds its checkpoint with the reference's constructors
import soundfile
from gradio_client import Client
from test_train_lm import tokenizer  # noqa: F401  (a fixture)

from delaykit.api import load
from delaykit.apps.tts import TtsApp, make_demo
from delaykit.modes.tts import SynthesisOptions

SCRIPT = "one two <break time=\"0.2s\"/> three"


@pytest.fixture(scope="module")
def tts_dir(tmp_path_factory):
    from test_tts import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tts-app"))[0]


def test_chunks_stream_the_library_synthesis(tts_dir):
    app = TtsApp(str(tts_dir), chunk_seconds=0.24)
    outputs = list(app.speak(SCRIPT, seed=3, temperature=0.6))
    chunks = [chunk for chunk, _, _ in outputs if chunk is not None]
    assert len(chunks) > 2 and all(rate == 24_000 and pcm.dtype == np.int16 for rate, pcm in chunks)
    assert all(path is None for _, _, path in outputs[:-1]) and outputs[-1][0] is None
    expected, words = load(tts_dir, device="cpu").synthesize(SCRIPT, SynthesisOptions(seed=3))
    streamed = np.concatenate([pcm for _, pcm in chunks]).astype(np.float32) / 32767
    assert streamed.shape == expected.shape and np.abs(streamed - expected.numpy()).max() < 1.01 / 32767
    saved, rate = soundfile.read(outputs[-1][2], dtype="float32")
    assert rate == 24_000 and np.abs(saved - streamed).max() < 2 / 32767
    assert outputs[-1][1] == [[round(w.start, 2), round(w.end, 2), w.text] for w in words]


def test_pace_is_the_padding_bonus(tts_dir, monkeypatch):
    app = TtsApp(str(tts_dir))
    used = []
    make = app.model.synthesizer
    monkeypatch.setattr(app.model, "synthesizer", lambda options: used.append(options) or make(options))
    list(app.speak(SCRIPT, seed=3, temperature=0.5, pace=1.5))
    assert used == [SynthesisOptions(seed=3, temperature=0.5, padding_bonus=1.5)]
    # (that the bonus lengthens speech is tested on the shipped model: test_default_tts.py)


def test_a_model_with_named_voices_gets_its_voice_pitch_and_rate(tokenizer, tmp_path, monkeypatch):  # noqa: F811
    from test_tts_voices import voiced_checkpoint

    app = TtsApp(str(voiced_checkpoint(tokenizer, tmp_path)))
    assert "en-us+f3" in app.voices and app.default_voice.voice == "en-gb+m1"
    used = []
    make = app.model.synthesizer
    monkeypatch.setattr(app.model, "synthesizer", lambda options: used.append(options) or make(options))
    list(app.speak("one two", seed=3, temperature=0.5, voice="en-us+f3", pitch=-1.0, rate=1.2))
    assert used == [SynthesisOptions(seed=3, temperature=0.5, voice="en-us+f3", pitch=-1, rate=1.2)]
    # a model without them ignores the controls (their sliders are hidden)
    plain = TtsApp(str(tmp_path / "plain-export"))
    assert plain.voices == [] and plain.default_voice is None


def test_an_uploaded_script_fills_the_text_box(tmp_path):
    from delaykit.apps.tts import read_script

    (tmp_path / "script.txt").write_text("Hello, world. <break time=\"1s\"/> Ça va?", encoding="utf-8")
    assert read_script(str(tmp_path / "script.txt")) == "Hello, world. <break time=\"1s\"/> Ça va?"


def test_a_script_without_words_is_an_error(tts_dir):
    from delaykit.errors import TextError

    with pytest.raises(TextError):
        list(TtsApp(str(tts_dir)).speak("   "))


def test_gradio_client_speaks(tts_dir):
    demo = make_demo(str(tts_dir))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    try:
        _, rows, wav = Client(url, verbose=False).predict(SCRIPT, 3, 0.6, 0.0, None, 0, 1.0, api_name="/speak")
        assert [row[2] for row in rows["data"]] == ["one", "two", "three"]
        saved, rate = soundfile.read(wav, dtype="float32")
        expected, _ = load(tts_dir, device="cpu").synthesize(SCRIPT, SynthesisOptions(seed=3))
        assert rate == 24_000 and saved.shape == expected.shape
    finally:
        demo.close()
