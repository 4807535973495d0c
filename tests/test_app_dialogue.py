"""The dialogue app: a live call over microphone chunks is the library's session over the same frames,
whatever the browser's rate and chunks; one call at a time; a recording is answered like `converse_file`;
gradio_client."""

from __future__ import annotations

import threading

import numpy as np
import pytest

gradio = pytest.importorskip("gradio", reason="the apps are an optional extra: delaykit[app]")
pytest.importorskip("moshi")  # the fixture builds its checkpoint with the reference's constructors
import soundfile
from gradio_client import Client, handle_file
from test_dialogue import checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)

from delaykit.api import load
from delaykit.apps.dialogue import AgentBusy, DialogueApp, make_demo
from delaykit.audio import resample, write_audio
from delaykit.modes.dialogue import DialogueOptions

FRAME = 1920


def user_audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24_000)) / 24_000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (rng.random(t.shape) > 0.3)).astype(np.float32)


def test_live_call_is_the_library_session(checkpoint, tmp_path):  # noqa: F811
    app = DialogueApp(str(checkpoint[0]), seed=7)
    audio = user_audio(1.0, seed=1)  # 12.5 frames: the half frame never reaches the model
    pcm16 = np.round(audio * 32767).astype(np.int16)  # what the browser sends
    call, replies = None, []
    for start in range(0, pcm16.shape[0], 5000):  # chunks that cut frames anywhere
        reply, rows, call = app.live_chunk((24_000, pcm16[start:start + 5000]), call)
        if reply is not None:
            replies.append(reply[1])
    with pytest.raises(AgentBusy):
        app.live_chunk((24_000, pcm16[:FRAME]), None)  # a second visitor
    stereo_path, rows, state = app.live_end(call)
    assert state is None
    heard = pcm16[:12 * FRAME].astype(np.float32) / 32768
    write_audio(tmp_path / "user.wav", heard, 24_000)
    expected = load(checkpoint[0], device="cpu").converse(tmp_path / "user.wav", tmp_path / "ref.wav",
                                                         DialogueOptions(seed=7))
    stereo, _ = soundfile.read(stereo_path, dtype="float32")
    reference, _ = soundfile.read(tmp_path / "ref.wav", dtype="float32")
    assert stereo.shape == reference.shape == (12 * FRAME, 2)
    assert np.abs(stereo - reference).max() < 2 / 32767
    played = np.concatenate(replies).astype(np.float32) / 32767
    assert np.abs(played - reference[:, 1]).max() < 2 / 32767
    assert rows == [[round(w.start, 2), round(w.end, 2), w.text] for w in expected.agent_words]
    app.live_chunk((24_000, pcm16[:FRAME]), None)[2].session.close()  # the line is free again


def test_the_agent_hears_the_microphone_resampled_whole(checkpoint):  # noqa: F811
    """The browser's 48 kHz chunks reach the agent as the recording resampled whole, however the browser cuts
    it (resampling each chunk alone put a click at every boundary)."""
    app = DialogueApp(str(checkpoint[0]), seed=7)
    recording = resample(user_audio(1.0, seed=6), 24_000, 48_000)  # [T] at the browser's rate
    pcm16 = np.round(recording * 32767).astype(np.int16)
    whole = resample(pcm16.astype(np.float32) / 32768, 48_000, 24_000)  # [T_model]
    for size in (11_520, 4_800, 7_001):  # stream_every=0.24 s, 0.1 s, odd cuts
        call = None
        for start in range(0, pcm16.shape[0], size):
            _, _, call = app.live_chunk((48_000, pcm16[start:start + size]), call)
        app.live_end(call)
        heard = np.concatenate(call.heard)  # [12 * FRAME]: the frames the agent heard
        assert heard.shape == (12 * FRAME,)
        assert np.abs(heard - whole[:heard.shape[0]]).max() < 1e-6


def test_the_call_ends_after_the_chunk_being_heard(checkpoint):  # noqa: F811
    """The browser's stop can come while a chunk is being heard, and a chunk after the stop: the call ends
    whole after that chunk, and the late chunk is dropped without reopening the call or raising."""
    app = DialogueApp(str(checkpoint[0]), seed=7)
    pcm16 = np.round(user_audio(0.4, seed=5) * 32767).astype(np.int16)
    _, _, call = app.live_chunk((24_000, pcm16[:FRAME]), None)
    stepping, resume = threading.Event(), threading.Event()
    step = call.session.step

    def slow_step(frame):
        stepping.set()
        resume.wait(10)
        return step(frame)

    call.session.step = slow_step
    results = {}
    hearing = threading.Thread(target=lambda: results.update(
        chunk=app.live_chunk((24_000, pcm16[FRAME:3 * FRAME]), call)))
    hearing.start()
    assert stepping.wait(10)
    ending = threading.Thread(target=lambda: results.update(end=app.live_end(call)))
    ending.start()
    ending.join(0.3)
    assert ending.is_alive()  # waiting for the chunk
    resume.set()
    hearing.join(10)
    ending.join(10)
    path, _, state = results["end"]
    assert state is None and results["chunk"][0][1].shape == (2 * FRAME,)
    assert soundfile.read(path)[0].shape == (3 * FRAME, 2)
    reply, _, state = app.live_chunk((24_000, pcm16[:FRAME]), call)  # sent before the stop, arriving after
    assert reply is None and state is None and app.live_end(call) == (None, [], None)
    app.live_chunk((24_000, pcm16[:FRAME]), None)[2].session.close()  # the line is free again


def test_recording_is_answered_like_converse_file(checkpoint, tmp_path):  # noqa: F811
    app = DialogueApp(str(checkpoint[0]), seed=3)
    write_audio(tmp_path / "user.wav", user_audio(0.8, seed=2), 24_000)
    path, rows = app.answer_file(str(tmp_path / "user.wav"))
    expected = load(checkpoint[0], device="cpu").converse(tmp_path / "user.wav", tmp_path / "ref.wav",
                                                         DialogueOptions(seed=3))
    assert np.array_equal(soundfile.read(path)[0], soundfile.read(tmp_path / "ref.wav")[0])
    assert rows == [[round(w.start, 2), round(w.end, 2), w.text] for w in expected.agent_words]
    assert app.answer_file(None) == (None, [])


def test_gradio_client_answers(checkpoint, tmp_path):  # noqa: F811
    demo = make_demo(str(checkpoint[0]))
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None)
    try:
        write_audio(tmp_path / "user.wav", user_audio(0.8, seed=4), 24_000)
        path, rows = Client(url, verbose=False).predict(handle_file(str(tmp_path / "user.wav")), api_name="/answer")
        stereo, rate = soundfile.read(path, dtype="float32")
        assert rate == 24_000 and stereo.shape == (round(0.8 * 24_000), 2) and "headers" in rows
    finally:
        demo.close()
