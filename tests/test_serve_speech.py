"""The TTS (/api/tts) and dialogue (/api/chat) servers on loopback: what comes back equals the library's own
synthesis or session over the same input, several sessions at once each as if alone; sessions past
capacity refused; bad messages; Ogg/Opus both ways."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the server is an optional extra: delaykit[serve]")
pytest.importorskip("moshi")  # the fixtures build their checkpoints with the reference's constructors
from test_dialogue import checkpoint as chat_checkpoint  # noqa: F401  (module fixture: a tiny moshi checkpoint)
from test_serve import RunningServer
from test_train_lm import tokenizer  # noqa: F401  (module fixture)
from websockets.sync.client import connect

import delaykit
from delaykit.modes.dialogue import DialogueOptions
from delaykit.modes.tts import SynthesisOptions
from delaykit.serve import protocol
from delaykit.serve.protocol import Kind
from delaykit.serve.speech import ChatServer, TtsServer

RATE, FRAME = 24_000, 1920


@pytest.fixture(scope="module")
def tts_dir(tmp_path_factory):
    from test_tts import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tts-serve"))[0]


def tts_server(tts_dir, **options) -> RunningServer:
    model = delaykit.load(tts_dir, device="cpu")
    return RunningServer(make=lambda config: TtsServer(model.synthesizer(SynthesisOptions(seed=5)), config), **options)


def speak(url: str, texts: list[str]) -> tuple[bytes, list[dict], dict, list[dict]]:
    """Send ``texts`` then end; (audio bytes, word events, the done event, errors)."""
    audio, words, errors = b"", [], []
    with connect(url, max_size=None) as ws:
        assert protocol.decode(ws.recv(timeout=10)).kind == Kind.HANDSHAKE
        for text in texts:
            ws.send(protocol.encode(Kind.TEXT, text))
        ws.send(protocol.encode(Kind.CONTROL, {"type": "end"}))
        while True:
            message = protocol.decode(ws.recv(timeout=60))
            if message.kind == Kind.AUDIO:
                audio += message.payload
            elif message.kind == Kind.ERROR:
                errors.append(json.loads(message.payload))
            elif message.kind == Kind.METADATA:
                event = json.loads(message.payload)
                if event["type"] == "word":
                    words.append(event)
                elif event["type"] == "done":
                    return audio, words, event, errors


def test_tts_streams_the_library_synthesis(tts_dir):
    running = tts_server(tts_dir)
    try:
        audio, words, done, errors = speak(running.url, ["one two three"])
        assert not errors
        expected, timed = delaykit.load(tts_dir, device="cpu").synthesize("one two three", SynthesisOptions(seed=5))
        received = np.frombuffer(audio, "<i2").astype(np.float32) / 32767
        assert received.shape == expected.shape and np.abs(received - expected.numpy()).max() < 1.01 / 32767
        assert [w["text"] for w in words] == [w.text for w in timed] == ["one", "two", "three"]
        assert [w["start"] for w in words] == [round(w.start, 3) for w in timed]
        assert done["seconds"] == pytest.approx(expected.shape[0] / RATE, abs=1e-3)
    finally:
        running.close()


def test_tts_text_in_pieces_opus_and_errors(tts_dir):
    sphn = pytest.importorskip("sphn")
    running = tts_server(tts_dir)
    try:
        url = running.url + "?format=opus"
        audio, words, done, errors = speak(url, ["one", " two", "\xff"[:0] + " three"])
        assert not errors and [w["text"] for w in words] == ["one", "two", "three"]
        assert audio[:4] == b"OggS"
        decoded = sphn.OpusStreamReader(RATE).append_bytes(audio)
        assert abs(decoded.shape[0] - done["seconds"] * RATE) <= 2 * FRAME
        with connect(running.url) as ws:
            ws.recv(timeout=10)
            ws.send(protocol.encode(Kind.TEXT, b"\xff\xfe"))
            ws.send(protocol.encode(Kind.AUDIO, b"\x00\x00"))
            ws.send(protocol.encode(Kind.CONTROL, {"type": "dance"}))
            for expected in ("not UTF-8", "not audio", "unknown control"):
                error = json.loads(protocol.decode(ws.recv(timeout=10)).payload)
                assert expected in error["error"] and not error["fatal"]
    finally:
        running.close()


def test_tts_sessions_pick_a_named_voice(tokenizer, tmp_path):  # noqa: F811
    from test_tts_voices import voiced_checkpoint

    model = delaykit.load(voiced_checkpoint(tokenizer, tmp_path), device="cpu")
    running = RunningServer(make=lambda config: TtsServer(model.synthesizer(SynthesisOptions(seed=5)), config))
    try:
        query = "?voice=en-us%2Bf3&pitch=1&rate=1.2"
        audio, words, _, errors = speak(running.url + query, ["one two"])
        assert not errors and [w["text"] for w in words] == ["one", "two"]
        asked = SynthesisOptions(seed=5, voice="en-us+f3", pitch=1, rate=1.2)
        expected, _ = model.synthesize("one two", asked)
        received = np.frombuffer(audio, "<i2").astype(np.float32) / 32767
        assert received.shape == expected.shape and np.abs(received - expected.numpy()).max() < 1.01 / 32767
        default, _ = model.synthesize("one two", SynthesisOptions(seed=5))  # no query: the server's own voice
        plain = np.frombuffer(speak(running.url, ["one two"])[0], "<i2").astype(np.float32) / 32767
        assert plain.shape == default.shape and np.abs(plain - default.numpy()).max() < 1.01 / 32767
        for bad in ("?voice=en-zz", "?pitch=high"):
            with connect(running.url + bad) as ws:
                error = json.loads(protocol.decode(ws.recv(timeout=10)).payload)
                assert error["fatal"] and "voice" in error["error"]
    finally:
        running.close()


def test_sessions_past_capacity_are_refused(tts_dir):
    running = tts_server(tts_dir, max_sessions=1)
    try:
        with connect(running.url) as first:
            first.recv(timeout=10)
            with connect(running.url) as second:
                error = json.loads(protocol.decode(second.recv(timeout=10)).payload)
                assert error["fatal"] and "in use" in error["error"]
        assert speak(running.url, ["one"])[1]  # the slot is free again
        assert running.server.metrics.rejected_busy == 1
    finally:
        running.close()


def test_tts_sessions_at_once_share_steps_and_each_gets_its_own_speech(tts_dir):
    """Two clients speaking at once are stepped in one batch (the scheduler's largest batch is 2), and each
    gets exactly the library's synthesis of its own text, its words pushed in pieces while the other speaks."""
    running = tts_server(tts_dir, max_sessions=4)
    texts = {"first": ["one two", " three four"], "second": ["five", " six seven"]}
    try:
        with contextlib.ExitStack() as stack:
            sockets = {name: stack.enter_context(connect(running.url, max_size=None)) for name in texts}
            for ws in sockets.values():
                assert protocol.decode(ws.recv(timeout=10)).kind == Kind.HANDSHAKE
            for piece in range(2):  # their pieces interleaved, so both texts are open at once
                for name, ws in sockets.items():
                    ws.send(protocol.encode(Kind.TEXT, texts[name][piece]))
            for ws in sockets.values():
                ws.send(protocol.encode(Kind.CONTROL, {"type": "end"}))
            model = delaykit.load(tts_dir, device="cpu")
            for name, ws in sockets.items():
                audio, words = b"", []
                while True:
                    message = protocol.decode(ws.recv(timeout=60))
                    if message.kind == Kind.AUDIO:
                        audio += message.payload
                    elif message.kind == Kind.METADATA and json.loads(message.payload)["type"] == "word":
                        words.append(json.loads(message.payload)["text"])
                    elif message.kind == Kind.METADATA and json.loads(message.payload)["type"] == "done":
                        break
                    else:
                        assert message.kind == Kind.TEXT, message
                expected, timed = model.synthesize("".join(texts[name]), SynthesisOptions(seed=5))
                received = np.frombuffer(audio, "<i2").astype(np.float32) / 32767
                assert words == [w.text for w in timed]
                assert received.shape == expected.shape and np.abs(received - expected.numpy()).max() < 2.01 / 32767
            assert running.server.scheduler.metrics.max_batch == 2
            health = running.server.health()
            assert health["capacity"] == 4
    finally:
        running.close()


def test_chat_answers_each_frame_like_the_library_session(chat_checkpoint, tmp_path):  # noqa: F811
    model = delaykit.load(chat_checkpoint[0], device="cpu")
    rng = np.random.default_rng(0)
    user = (0.2 * rng.standard_normal(10 * FRAME + 700)).astype(np.float32)
    pcm = np.round(np.clip(user, -1, 1) * 32767).astype("<i2")
    heard = pcm[:10 * FRAME].astype(np.float32) / 32768
    from delaykit.audio import write_audio

    write_audio(tmp_path / "user.wav", heard, RATE)
    # The library's answer first: the server's session streams on the same model until it has noticed the
    # client left, which may be after the last message arrives.
    expected = model.converse(tmp_path / "user.wav", tmp_path / "out.wav", DialogueOptions(seed=9))
    running = RunningServer(make=lambda config: ChatServer(model.conversation(DialogueOptions(seed=9)), config))
    try:
        audio, pieces = b"", []
        with connect(running.url, max_size=None) as ws:
            ws.recv(timeout=10)
            for start in range(0, pcm.shape[0], 3001):  # chunks that cut frames anywhere
                ws.send(protocol.encode(Kind.AUDIO, pcm[start:start + 3001].tobytes()))
            ws.send(protocol.encode(Kind.PING, b"last"))  # answered once every frame before it is answered
            while True:
                message = protocol.decode(ws.recv(timeout=30))
                if message.kind == Kind.PING:
                    break
                if message.kind == Kind.AUDIO:
                    audio += message.payload
                elif message.kind == Kind.TEXT:
                    pieces.append(message.payload.decode())
        agent = np.frombuffer(audio, "<i2").astype(np.float32) / 32767
        assert agent.shape == (10 * FRAME,)  # the 700 samples short of a frame wait for more
        assert np.abs(agent - np.clip(expected.agent_audio, -1, 1)).max() < 2 / 32767
        assert "".join(pieces).replace("\u2581", " ").split() == expected.text.split()
    finally:
        running.close()


def chat(url: str, pcm: np.ndarray, chunk: int = 2500) -> tuple[np.ndarray, list[str]]:
    """Send ``pcm`` (int16) in chunks and wait until every whole frame is answered: (agent audio, pieces)."""
    audio, pieces = b"", []
    with connect(url, max_size=None) as ws:
        assert protocol.decode(ws.recv(timeout=10)).kind == Kind.HANDSHAKE
        for start in range(0, pcm.shape[0], chunk):
            ws.send(protocol.encode(Kind.AUDIO, pcm[start:start + chunk].tobytes()))
        ws.send(protocol.encode(Kind.PING, b"last"))
        while (message := protocol.decode(ws.recv(timeout=60))).kind != Kind.PING:
            if message.kind == Kind.AUDIO:
                audio += message.payload
            elif message.kind == Kind.TEXT:
                pieces.append(message.payload.decode())
    return np.frombuffer(audio, "<i2"), pieces


def test_chat_sessions_at_once_each_answered_alone(chat_checkpoint, tmp_path):  # noqa: F811
    """Two clients talk at once (one batch), a third is refused while they do, and once one leaves the next
    starts from a fresh state: each gets what it gets alone."""
    import threading

    model = delaykit.load(chat_checkpoint[0], device="cpu")
    rng = np.random.default_rng(3)
    users = [np.round(np.clip(0.2 * rng.standard_normal(8 * FRAME), -1, 1) * 32767).astype("<i2") for _ in range(2)]
    running = RunningServer(make=lambda config: ChatServer(model.conversation(DialogueOptions(seed=2)), config),
                            max_sessions=2)
    try:
        alone = [chat(running.url, user) for user in users]  # one after the other: each alone in the batch
        results: dict[int, tuple] = {}
        with connect(running.url) as held, connect(running.url) as other:  # both slots taken
            held.recv(timeout=10)
            other.recv(timeout=10)
            other.send(protocol.encode(Kind.AUDIO, users[1][:3 * FRAME].tobytes()))  # leaves a used slot
            with connect(running.url) as third:
                error = json.loads(protocol.decode(third.recv(timeout=10)).payload)
                assert error["fatal"] and "all 2 sessions" in error["error"]
        both = [threading.Thread(target=lambda i=i: results.update({i: chat(running.url, users[i], 1000 + i)}))
                for i in range(2)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(60)
        for (audio, pieces), (expected_audio, expected_pieces) in zip([results[0], results[1]], alone):
            assert audio.shape == (8 * FRAME,) and pieces == expected_pieces
            assert np.abs(audio.astype(int) - expected_audio).max() <= 1
        metrics = running.server.scheduler.metrics
        assert metrics.rejected_busy >= 1 and metrics.sessions_total >= 6
        print(f"chat: {metrics.steps} steps for {metrics.frames} frames, max batch {metrics.max_batch}, "
              f"{1000 * metrics.step_seconds / max(metrics.steps, 1):.1f} ms per step")
    finally:
        running.close()
