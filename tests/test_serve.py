"""The live ASR server on loopback: words equal offline recognition, batching, limits, bad input, faults."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

websockets = pytest.importorskip("websockets", reason="the server is an optional extra: delaykit[serve]")
from test_codec_cli import make_checkpoint
from test_train_lm import tiny_config, toy_corpus
from websockets.sync.client import connect

import delaykit
from delaykit.serve import protocol
from delaykit.serve.protocol import Kind
from delaykit.serve.server import AsrServer, ServeConfig
from delaykit.train.lm import LMTrainer, export_lm
from delaykit.train.tokenizer import train_tokenizer

RATE = 24_000


@pytest.fixture(scope="module")
def asr_checkpoint(tmp_path_factory):
    """A tiny ASR checkpoint trained for a few steps: its words are nonsense but deterministic."""
    directory = tmp_path_factory.mktemp("serve")
    make_checkpoint(directory / "codec")
    words = "one two three four five six seven eight nine ten".split()
    texts = [" ".join(np.random.default_rng(i).choice(words, 5)) for i in range(100)]
    tokenizer = train_tokenizer(texts, directory / "spm.model", vocab_size=30)
    LMTrainer(tiny_config("asr", max_steps=3, codec=str(directory / "codec")), toy_corpus(), tokenizer,
              directory / "run").fit()
    return export_lm(directory / "run", directory / "asr")


@pytest.fixture(scope="module")
def asr_model(asr_checkpoint):
    """The checkpoint for offline recognition (an engine streams one session at a time, so the server loads
    its own)."""
    return delaykit.load(asr_checkpoint, device="cpu")


class RunningServer:
    """A server on an ephemeral loopback port, in a thread with its own event loop: an AsrServer of
    ``checkpoint``, or ``make(config)`` for another endpoint."""

    def __init__(self, checkpoint=None, make=None, **options):
        config = ServeConfig(port=0, **options)
        if make is None:
            model = delaykit.load(checkpoint, device="cpu")
            self.server = AsrServer(model.transcriber(), config, model_name="tiny")
        else:
            self.server = make(config)
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            def on_ready(port: int) -> None:
                self.port = port
                ready.set()

            self.loop.run_until_complete(self.server.serve(ready=on_ready, stop=self.stop))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.server.endpoint}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.server.close()


@pytest.fixture
def server(asr_checkpoint):
    running = RunningServer(asr_checkpoint, max_sessions=4)
    yield running
    running.close()


def test_audio(seed: int, seconds: float = 2.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.2 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(t.shape)).astype(
        np.float32)


test_audio.__test__ = False  # a helper, not a test


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def recognise(url: str, samples: np.ndarray, chunk: float = 0.3, before_end=None) -> tuple[list[dict], list[dict]]:
    """Stream ``samples`` like a live client; the words (metadata) and errors until the flush completes."""
    words, errors = [], []
    with connect(url, max_size=None) as ws:
        handshake = protocol.decode(ws.recv(timeout=10))
        assert handshake.kind == Kind.HANDSHAKE and json.loads(handshake.payload)["sample_rate"] == RATE
        step = int(chunk * RATE)
        for start in range(0, samples.shape[0], step):
            ws.send(protocol.encode(Kind.AUDIO, pcm16(samples[start:start + step])))
        if before_end is not None:
            before_end(ws)
        ws.send(protocol.encode(Kind.CONTROL, {"type": "end"}))
        while True:
            message = protocol.decode(ws.recv(timeout=30))
            if message.kind == Kind.METADATA:
                event = json.loads(message.payload)
                if event["type"] == "word":
                    words.append(event)
                elif event["type"] == "flushed":
                    return words, errors
            elif message.kind == Kind.ERROR:
                errors.append(json.loads(message.payload))


def offline_words(model, samples: np.ndarray) -> list[dict]:
    quantized = np.frombuffer(pcm16(samples), "<i2").astype(np.float32) / 32768  # what the wire carries
    return [{"type": "word", "text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in model.transcriber().transcribe(quantized).words]


def test_words_equal_offline_recognition(server, asr_model):
    samples = test_audio(0)
    words, errors = recognise(server.url, samples)
    assert not errors, errors
    expected = offline_words(asr_model, samples)
    assert expected, "the fixture model should say something"
    assert words == expected


def opus_stream(samples: np.ndarray) -> bytes:
    """``samples`` as one Ogg/Opus stream, the way a browser client encodes its microphone (20 ms frames)."""
    sphn = pytest.importorskip("sphn")
    writer = sphn.OpusStreamWriter(RATE)
    padded = np.pad(samples, (0, -samples.shape[0] % 480)).astype(np.float32)
    return b"".join(writer.append_pcm(padded[i:i + 480]) for i in range(0, padded.shape[0], 480))


def test_ogg_opus_audio_gives_the_words_of_its_decoded_pcm(server, asr_model):
    sphn = pytest.importorskip("sphn")
    samples = test_audio(3)
    stream = opus_stream(samples)
    decoded = sphn.OpusStreamReader(RATE).append_bytes(stream)  # what the server hears: lossy, but the same
    assert decoded.shape[0] >= samples.shape[0] - 480
    words, errors = [], []
    with connect(server.url, max_size=None) as ws:
        protocol.decode(ws.recv(timeout=10))
        for start in range(0, len(stream), 777):  # cuts that fall inside Ogg pages
            ws.send(protocol.encode(Kind.AUDIO, stream[start:start + 777]))
        ws.send(protocol.encode(Kind.CONTROL, {"type": "end"}))
        while True:
            message = protocol.decode(ws.recv(timeout=30))
            event = json.loads(message.payload) if message.kind in (Kind.METADATA, Kind.ERROR) else {}
            if message.kind == Kind.ERROR:
                errors.append(event)
            elif event.get("type") == "word":
                words.append(event)
            elif event.get("type") == "flushed":
                break
    assert not errors, errors
    expected = [{"type": "word", "text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
                for w in asr_model.transcriber().transcribe(decoded).words]
    assert expected and words == expected


def test_concurrent_sessions_each_get_their_own_words(server, asr_model):
    signals = [test_audio(seed, 2.0 + 0.3 * seed) for seed in range(4)]
    results: dict[int, list] = {}

    def client(index: int) -> None:
        results[index] = recognise(server.url, signals[index], chunk=0.1 + 0.05 * index)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for index, signal in enumerate(signals):
        words, errors = results[index]
        assert not errors and words == offline_words(asr_model, signal), index
    assert server.server.scheduler.metrics.max_batch >= 2  # they really shared steps


def test_busy_past_capacity(asr_checkpoint):
    running = RunningServer(asr_checkpoint, max_sessions=1)
    try:
        with connect(running.url) as first:
            assert protocol.decode(first.recv(timeout=10)).kind == Kind.HANDSHAKE
            with connect(running.url) as second:
                error = protocol.decode(second.recv(timeout=10))
                assert error.kind == Kind.ERROR and json.loads(error.payload)["fatal"]
                assert "in use" in json.loads(error.payload)["error"]
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    second.recv(timeout=10)
                assert closed.value.rcvd.code == 1013
        assert running.server.scheduler.metrics.rejected_busy == 1
    finally:
        running.close()


def test_bad_messages_get_errors_and_the_session_goes_on(server, asr_model):
    samples = test_audio(1)

    def misbehave(ws) -> None:
        ws.send(b"")  # no kind byte
        ws.send(bytes([0x7F]) + b"xx")  # unknown kind
        ws.send(protocol.encode(Kind.AUDIO, b"\x01\x02\x03"))  # half a sample
        ws.send("a text frame")
        ws.send(protocol.encode(Kind.CONTROL, b"\xff\xfe"))  # not UTF-8
        ws.send(protocol.encode(Kind.CONTROL, {"type": "dance"}))
        ws.send(protocol.encode(Kind.HANDSHAKE, b"{}"))  # a server-only kind
        ws.send(protocol.encode(Kind.PING, b"p1"))

    words, errors = recognise(server.url, samples, before_end=misbehave)
    assert len(errors) == 7 and not any(e["fatal"] for e in errors)
    assert words == offline_words(asr_model, samples)  # the bad messages changed nothing


def test_oversize_message_closes_only_that_session(asr_checkpoint, asr_model):
    running = RunningServer(asr_checkpoint, max_sessions=2, max_message_bytes=10_000)
    try:
        with connect(running.url, max_size=None) as ws:
            ws.recv(timeout=10)
            ws.send(protocol.encode(Kind.AUDIO, bytes(20_000)))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1009  # message too big
        samples = test_audio(2, 1.0)
        assert recognise(running.url, samples, chunk=0.1)[0] == offline_words(asr_model, samples)
    finally:
        running.close()


def test_vanishing_client_frees_its_slot(server, asr_model):
    with connect(server.url) as ws:
        ws.recv(timeout=10)
        ws.send(protocol.encode(Kind.AUDIO, pcm16(test_audio(3, 1.0))))
        ws.socket.close()  # gone without a close handshake
    samples = test_audio(4, 1.0)
    assert recognise(server.url, samples)[0] == offline_words(asr_model, samples)
    for _ in range(100):
        if server.server.scheduler.metrics.sessions == 0:
            break
        threading.Event().wait(0.05)
    assert server.server.scheduler.metrics.sessions == 0


def test_health_metrics_and_token(asr_checkpoint):
    running = RunningServer(asr_checkpoint, max_sessions=2, token="s3cret")
    try:
        base = f"http://127.0.0.1:{running.port}"
        health = json.loads(urllib.request.urlopen(base + "/health", timeout=10).read())
        assert health["status"] == "ok" and health["capacity"] == 2
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            connect(running.url)
        assert refused.value.response.status_code == 401
        with connect(running.url + "?token=s3cret") as ws:
            assert protocol.decode(ws.recv(timeout=10)).kind == Kind.HANDSHAKE
        with connect(running.url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            assert protocol.decode(ws.recv(timeout=10)).kind == Kind.HANDSHAKE
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        assert "delaykit_sessions_total 2" in metrics and "delaykit_dropped_frames 0" in metrics
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nowhere", timeout=10)
        assert missing.value.code == 404
    finally:
        running.close()


def test_audio_decoder_picks_the_format_from_the_first_message(monkeypatch):
    import sys

    pcm = protocol.AudioDecoder(RATE)
    assert pcm.decode(b"\x00\x40\x00\xc0").tolist() == [0.5, -0.5] and pcm.format == "pcm16"
    with pytest.raises(protocol.ProtocolError, match="whole 16-bit samples"):
        pcm.decode(b"OggS\x00")  # later messages do not switch formats
    monkeypatch.setitem(sys.modules, "sphn", None)
    with pytest.raises(protocol.ProtocolError, match=r"pip install 'delaykit\[serve\]'"):
        protocol.AudioDecoder(RATE).decode(b"OggS" + bytes(40))


def test_fuzzed_messages_never_take_the_server_down(server, asr_model):
    """Seeded random messages (any kind byte, any payload, PCM and Ogg/Opus sessions, text frames): each gets
    at most non-fatal errors, and the server then recognises a normal session exactly."""
    rng = np.random.default_rng(1234)
    for session in range(6):
        with connect(server.url, max_size=None) as ws:
            ws.recv(timeout=10)
            if session % 2:  # an Opus session that turns to garbage
                ws.send(protocol.encode(Kind.AUDIO, opus_stream(test_audio(session, 0.5))[:300]))
            for _ in range(40):
                kind = int(rng.integers(0, 9))
                payload = bytes(rng.integers(0, 256, size=int(rng.integers(0, 3000)), dtype=np.uint8))
                if rng.random() < 0.1:
                    ws.send(payload.decode("latin-1"))  # a text frame
                else:
                    ws.send(bytes([kind]) + payload)
            ws.send(protocol.encode(Kind.PING, b"still there?"))
            while True:  # every reply up to the pong: errors, never fatal
                message = protocol.decode(ws.recv(timeout=30))
                if message.kind == Kind.PING and message.payload == b"still there?":
                    break  # (random pings are echoed too)
                if message.kind == Kind.ERROR:
                    assert not json.loads(message.payload)["fatal"]
    samples = test_audio(9)
    words, errors = recognise(server.url, samples)
    assert not errors and words == offline_words(asr_model, samples)


def test_a_client_gone_while_its_message_is_answered_ends_the_session_quietly(asr_checkpoint):
    """Its message arrived, the reply cannot be sent (the tab closed): the session ends, nothing is raised."""
    from types import SimpleNamespace

    from websockets.exceptions import ConnectionClosed

    class Gone:
        async def recv(self):
            return protocol.encode(Kind.PING, b"are you there")

        async def send(self, data):
            raise ConnectionClosed(None, None)

    async def never_called(message):
        raise AssertionError(message)

    server = AsrServer(delaykit.load(asr_checkpoint, device="cpu").transcriber(), ServeConfig())
    try:
        asyncio.run(asyncio.wait_for(server._receive_loop(Gone(), SimpleNamespace(errors=0), never_called), 5))
    finally:
        server.close()
