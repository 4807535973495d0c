"""The dialogue app: its own server's /api/chat (what the live tab's page speaks) answers each of several
conversations at once like the library's session; past the capacity a visitor is told so; a recording is
answered like `converse_file`; gradio_client."""

from __future__ import annotations

import json
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
from delaykit.audio import write_audio
from delaykit.modes.dialogue import DialogueOptions

FRAME = 1920


def user_audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24_000)) / 24_000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (rng.random(t.shape) > 0.3)).astype(np.float32)


def test_recording_is_answered_like_converse_file(checkpoint, tmp_path):  # noqa: F811
    app = DialogueApp(str(checkpoint[0]), seed=3)
    write_audio(tmp_path / "user.wav", user_audio(0.8, seed=2), 24_000)
    path, rows = app.answer_file(str(tmp_path / "user.wav"))
    expected = load(checkpoint[0], device="cpu").converse(tmp_path / "user.wav", tmp_path / "ref.wav",
                                                         DialogueOptions(seed=3))
    got, ref = soundfile.read(path, dtype="int16")[0], soundfile.read(tmp_path / "ref.wav", dtype="int16")[0]
    # The app answers in a slot of its batch of 4: the same tokens, and float sums that may round one 16-bit
    # step apart from a batch of one.
    assert got.shape == ref.shape and np.abs(got.astype(int) - ref).max() <= 1
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


def test_live_route_serves_conversations_at_once(checkpoint, tmp_path):  # noqa: F811
    pytest.importorskip("websockets")
    from test_serve_speech import chat
    from websockets.sync.client import connect

    from delaykit.serve import protocol
    from delaykit.serve.protocol import Kind

    demo = make_demo(str(checkpoint[0]), max_sessions=2, seed=5)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    chat_url = url.replace("http://", "ws://").rstrip("/") + "/api/chat"
    try:
        users = [np.round(user_audio(0.64, seed) * 32767).astype("<i2") for seed in (8, 9)]  # 8 frames each
        expected = []
        for index, user in enumerate(users):
            write_audio(tmp_path / f"user{index}.wav", user.astype(np.float32) / 32768, 24_000)
            path, _ = demo.dialogue_app.answer_file(str(tmp_path / f"user{index}.wav"))
            expected.append(soundfile.read(path, dtype="float32")[0][:, 1])
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.update({i: chat(chat_url, users[i], 1500 + i)}))
                   for i in range(2)]
        with connect(chat_url) as first, connect(chat_url) as second:
            for ws in (first, second):
                assert protocol.decode(ws.recv(timeout=10)).kind == Kind.HANDSHAKE
            with connect(chat_url) as third:
                error = json.loads(protocol.decode(third.recv(timeout=10)).payload)
                assert error["fatal"] and "all 2 sessions" in error["error"]
            with pytest.raises(AgentBusy, match="all 2 sessions"):  # the recording tab shares the slots
                demo.dialogue_app.answer_file(str(tmp_path / "user0.wav"))
        for thread in threads:  # the slots are free again
            thread.start()
        for thread in threads:
            thread.join(60)
        for index in range(2):
            audio, _ = results[index]
            received = audio.astype(np.float32) / 32767  # the server's PCM scale (the WAV's is 32768)
            assert audio.shape == expected[index].shape and np.abs(received - expected[index]).max() < 3 / 32767
        assert demo.dialogue_app.scheduler.metrics.max_batch <= 2
    finally:
        demo.close()
        demo.dialogue_app.close()
