"""The TTS app: streamed chunks add up to the library's synthesis, then the WAV and the words; two sessions at
once share model steps, each getting its own speech, and a closed tab frees its item; gradio_client."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

gradio = pytest.importorskip("gradio", reason="the apps are an optional extra: delaykit[app]")
pytest.importorskip("moshi")  # the fixture builds its checkpoint with the reference's constructors
import soundfile
from gradio_client import Client, handle_file
from test_train_lm import tokenizer  # noqa: F401  (a fixture)

from delaykit.api import load
from delaykit.apps import can_stream_audio
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


def test_a_closed_tab_stops_its_synthesis(tts_dir):
    """Once the tab's stop is set the synthesis ends at the next frame, without a WAV, and frees the engine."""
    app = TtsApp(str(tts_dir), chunk_seconds=0.24)
    stop = threading.Event()
    outputs = []
    for output in app.speak(SCRIPT, seed=3, stop=stop):
        outputs.append(output)
        stop.set()
    assert len(outputs) == 1 and outputs[0][0] is not None and outputs[0][2] is None
    wait_for(lambda: app.scheduler.running == 0, "the stopped synthesis to free its item")
    assert list(app.speak(SCRIPT, seed=3))[-1][2] is not None  # the next visitor is served whole


def wait_for(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


LONG_SCRIPT = " ".join(["one two three four five six seven eight nine ten"] * 3)


def pcm_of(outputs) -> np.ndarray:
    return np.concatenate([pcm for chunk, _, _ in outputs if chunk is not None for pcm in [chunk[1]]])


def test_two_sessions_share_steps_and_each_gets_its_own_speech(tts_dir):
    """Two syntheses at once (other texts, seeds and paces) are items of one batch: some steps carry both,
    and each session gets the chunks and words it gets alone (to within one PCM step: the codec decodes a
    batch)."""
    app = TtsApp(str(tts_dir), chunk_seconds=0.24)
    requests = {"long": (LONG_SCRIPT, 3, 0.0), "short": (SCRIPT, 5, 1.0)}
    outputs: dict[str, list] = {}
    first_chunk = threading.Event()

    def session(name: str) -> None:
        script, seed, pace = requests[name]
        outputs[name] = []
        for output in app.speak(script, seed=seed, pace=pace):
            outputs[name].append(output)
            first_chunk.set()

    long_session = threading.Thread(target=session, args=("long",))
    long_session.start()
    assert first_chunk.wait(60)  # the long speech is under way: the short one joins its batch
    session("short")
    long_session.join(60)
    assert app.scheduler.metrics.max_batch == 2 and app.scheduler.running == 0
    model = load(tts_dir, device="cpu")
    for name, (script, seed, pace) in requests.items():
        expected, words = model.synthesize(script, SynthesisOptions(seed=seed, padding_bonus=pace))
        streamed = pcm_of(outputs[name]).astype(np.float32) / 32767
        assert streamed.shape == expected.shape
        assert np.abs(streamed - expected.numpy()).max() < 2.01 / 32767
        assert outputs[name][-1][1] == [[round(w.start, 2), round(w.end, 2), w.text] for w in words]
    app.close()


def test_a_closed_tab_frees_its_item_while_another_goes_on(tts_dir):
    """Closing one tab (its stop set, as the page's unload handler does) frees its item at once, even while
    its handler is not reading; the other session's speech is unchanged."""
    app = TtsApp(str(tts_dir), chunk_seconds=0.24)
    stop = threading.Event()
    closed = app.speak(LONG_SCRIPT, seed=3, stop=stop)
    next(closed)  # under way; its handler now waits (gradio stopped reading it)
    wait_for(lambda: app.scheduler.running == 1, "the first session to hold an item")
    other = app.speak(LONG_SCRIPT, seed=4)
    outputs = [next(other)]
    wait_for(lambda: app.scheduler.running == 2, "the second session to join the batch")
    stop.set()
    app.scheduler.wake()
    wait_for(lambda: app.scheduler.running == 1, "the closed tab's item to be freed", seconds=2)
    outputs += list(other)
    assert list(closed) == []  # nothing more for the closed tab
    expected, _ = load(tts_dir, device="cpu").synthesize(LONG_SCRIPT, SynthesisOptions(seed=4))
    streamed = pcm_of(outputs).astype(np.float32) / 32767
    assert streamed.shape == expected.shape and np.abs(streamed - expected.numpy()).max() < 2.01 / 32767
    app.close()


def test_pace_is_the_padding_bonus(tts_dir, monkeypatch):
    app = TtsApp(str(tts_dir))
    used = []
    make = app.model.synthesizer
    monkeypatch.setattr(app.model, "synthesizer", lambda options: used.append(options) or make(options))
    list(app.speak(SCRIPT, seed=3, temperature=0.5, pace=1.5))
    assert used == [SynthesisOptions(seed=3, temperature=0.5, padding_bonus=1.5)]
    # (that the bonus lengthens speech is tested on the shipped model: test_default_tts.py)


@pytest.fixture(scope="module")
def voiced_root(tokenizer, tmp_path_factory):  # noqa: F811
    """A folder holding a tiny voice-conditioned checkpoint (export) and the plain one it started from
    (plain-export)."""
    from test_tts_voices import voiced_checkpoint

    root = tmp_path_factory.mktemp("tts-app-voices")
    voiced_checkpoint(tokenizer, root)
    return root


def test_a_model_with_named_voices_gets_its_voice_pitch_and_rate(voiced_root, monkeypatch):
    app = TtsApp(str(voiced_root / "export"))
    assert "en-us+f3" in app.voices and app.default_voice.voice == "en-gb+m1"
    used = []
    make = app.model.synthesizer
    monkeypatch.setattr(app.model, "synthesizer", lambda options: used.append(options) or make(options))
    list(app.speak("one two", seed=3, temperature=0.5, voice="en-us+f3", pitch=-1.0, rate=1.2))
    assert used == [SynthesisOptions(seed=3, temperature=0.5, voice="en-us+f3", pitch=-1, rate=1.2)]
    # a model without them ignores the controls (their sliders are hidden)
    plain = TtsApp(str(voiced_root / "plain-export"))
    assert plain.voices == [] and plain.default_voice is None


def test_word_rows_become_one_subtitle_each():
    from delaykit.apps.tts import word_subtitles

    assert word_subtitles([[0.0, 0.4, "one"], [0.4, 0.96, "two"]]) == [
        {"text": "one", "timestamp": [0.0, 0.4]}, {"text": "two", "timestamp": [0.4, 0.96]}]


def test_an_uploaded_script_fills_the_text_box(tmp_path):
    from delaykit.apps.tts import read_script

    (tmp_path / "script.txt").write_text("Hello, world. <break time=\"1s\"/> Ça va?", encoding="utf-8")
    assert read_script(str(tmp_path / "script.txt")) == "Hello, world. <break time=\"1s\"/> Ça va?"


def test_a_script_without_words_is_an_error(tts_dir):
    from delaykit.errors import TextError

    with pytest.raises(TextError):
        list(TtsApp(str(tts_dir)).speak("   "))


@pytest.mark.parametrize("streaming", [True, False], ids=["ffmpeg", "no-ffmpeg"])
def test_gradio_client_speaks(tts_dir, tmp_path, monkeypatch, streaming):
    """The words, the WAV, and the whole speech with one subtitle per word: in a second player after a
    streamed one, or in the only player where gradio cannot stream (no ffmpeg)."""
    if streaming and not can_stream_audio():
        pytest.skip("gradio streams audio only through ffmpeg")
    monkeypatch.setattr("delaykit.apps.tts.can_stream_audio", lambda: streaming)
    demo = make_demo(str(tts_dir))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    try:
        client = Client(url, verbose=False)
        speech, rows, wav, subtitled = client.predict(SCRIPT, 3, 0.6, 0.0, None, 0, 1.0, api_name="/speak")
        assert [row[2] for row in rows["data"]] == ["one", "two", "three"]
        saved, rate = soundfile.read(wav, dtype="float32")
        expected, _ = load(tts_dir, device="cpu").synthesize(SCRIPT, SynthesisOptions(seed=3))
        assert rate == 24_000 and saved.shape == expected.shape
        if not streaming:  # the player holds the whole speech, with its subtitles
            assert (subtitled or {}).get("value") is None  # the second player stays hidden and empty
            subtitled = speech
        assert subtitled["subtitles"] == [{"start": s, "end": e, "text": w} for s, e, w in rows["data"]]
        assert soundfile.read(subtitled["value"], dtype="float32")[0].shape == expected.shape
        (tmp_path / "script.txt").write_text(SCRIPT, encoding="utf-8")  # "Load a script" fills the text box
        assert client.predict(handle_file(str(tmp_path / "script.txt")), api_name="/load_script") == SCRIPT
    finally:
        demo.close()


def test_gradio_client_speaks_in_the_chosen_voice(voiced_root, monkeypatch):
    """The page's voice menu and pitch and rate sliders reach the synthesis (in the event's input order)."""
    demo = make_demo(str(voiced_root / "export"))
    app = demo.tts_app
    used = []
    make = app.model.synthesizer
    monkeypatch.setattr(app.model, "synthesizer", lambda options: used.append(options) or make(options))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        _, rows, wav, _ = Client(url, verbose=False).predict("one two", 3, 0.5, 0.5, "en-us+f3", -1, 1.2,
                                                             api_name="/speak")
        assert [row[2] for row in rows["data"]] == ["one", "two"] and wav
        assert used == [SynthesisOptions(seed=3, temperature=0.5, padding_bonus=0.5, voice="en-us+f3", pitch=-1,
                                         rate=1.2)]
    finally:
        demo.close()


@pytest.mark.slow
def test_the_shipped_model_gets_a_voice_menu():
    """Out of the box (the shipped TTS model, which has named voices) the voice controls are shown, set to
    the model's default voice."""
    demo = make_demo("default")
    app = demo.tts_app
    (menu,) = [block for block in demo.blocks.values() if isinstance(block, gradio.Dropdown)]
    assert app.default_voice.voice in app.voices and menu.value == app.default_voice.voice
    assert [value for _, value in menu.choices] == app.voices
    assert all(block.visible for block in demo.blocks.values() if isinstance(block, gradio.Row))
