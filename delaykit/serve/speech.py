"""``delaykit serve`` for the modes that speak: streaming TTS (``/api/tts``) and full-duplex dialogue (``/api/chat``).

Both use the framing of :mod:`delaykit.serve.protocol`. ``/api/tts`` holds one session at a time (a second
client gets a fatal ``busy`` error and close code 1013); ``/api/chat`` holds up to ``max_sessions``
conversations, stepped together in one batch by a :class:`~delaykit.serve.chat.ChatScheduler`, each
answered exactly as it would be alone, and refuses more the same way. The model runs in a worker thread, so
the event loop keeps answering health checks and other clients meanwhile.

``/api/tts`` (``?format=pcm16|opus`` picks the audio sent back, pcm16 by default; for a model with named voices
``&voice=en-us+f3&pitch=1&rate=1.2`` pick the session's voice, pitch step and speaking rate):

* client -> server: ``0x02`` text, any number of messages (words as an LLM produces them; ``<break
  time="0.5s"/>`` pauses), then ``0x03 {"type": "end"}`` when the text is complete.
* server -> client: ``0x01`` audio as it is generated, ``0x02`` each word as it is spoken and ``0x04 {"type":
  "word", "text", "start"}`` (seconds into the session's audio); after the end, ``0x04 {"type": "done",
  "seconds"}``; the session can then speak another text.

``/api/chat`` (Kyutai's moshi endpoint): the client sends ``0x01`` audio (16-bit PCM or Ogg/Opus, as for
``/api/asr``); every whole 80 ms frame is one step of the conversation, and the server answers each with
``0x01`` the agent's 80 ms of audio (in the client's format unless ``?format=`` says otherwise) and, when the
agent's inner monologue has one, ``0x02`` its text piece (SentencePiece, a leading space starting a word).
``0x03 {"type": "reset"}`` starts the conversation over (the audio not yet answered is dropped). A ``0x06``
ping is answered once every whole frame sent before it has been answered. A conversation that leaves frees
its slot; the next one to take it starts from a fresh state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import typing as tp
from urllib.parse import parse_qs, urlsplit

from .. import __version__
from ..errors import TextError
from ..modes.dialogue import Conversation
from ..modes.tts import AudioFrame, SpokenWord, Synthesizer
from . import protocol
from .chat import ChatScheduler
from .protocol import Kind, ProtocolError
from .scheduler import Metrics
from .server import BatchedServer, Link, ServeConfig, ServerBase


def _query(connection: tp.Any, name: str) -> str | None:
    values = parse_qs(urlsplit(connection.request.path).query).get(name)
    return values[0] if values else None


class OneAtATimeServer(ServerBase):
    """A server whose engine holds one session: admission, handshake, the receive loop and its limits."""

    def __init__(self, config: ServeConfig, model_name: str, sample_rate: int, frame_size: int):
        super().__init__(config, model_name)
        self.sample_rate = sample_rate
        self.frame_size = frame_size
        self.metrics = Metrics()
        self._line = threading.Lock()

    def health(self) -> dict:
        return {"sessions": self.metrics.sessions, "capacity": 1}

    def metrics_text(self) -> str:
        return self.metrics.prometheus()

    async def handle(self, connection: tp.Any) -> None:
        if not self._line.acquire(blocking=False):
            self.metrics.rejected_busy += 1
            await self._busy(connection, "the model is in use by another session: try again later")
            return
        self.metrics.sessions += 1
        self.metrics.sessions_total += 1
        try:
            try:
                self.open_session(connection)
            except ProtocolError as exc:
                await self._fatal(connection, str(exc))
                return
            handshake = {"sample_rate": self.sample_rate, "frame_size": self.frame_size, "model": self.model_name,
                         "version": __version__}
            await connection.send(protocol.encode(Kind.HANDSHAKE, handshake))
            await self._receive(connection)
        finally:
            self.close_session()
            self.metrics.sessions -= 1
            self._line.release()

    async def _receive(self, connection: tp.Any) -> None:
        await self._receive_loop(connection, self.metrics, lambda message: self.on_message(connection, message))

    def open_session(self, connection: tp.Any) -> None:
        raise NotImplementedError

    def close_session(self) -> None:
        raise NotImplementedError

    async def on_message(self, connection: tp.Any, message: protocol.Message) -> None:
        raise NotImplementedError


class TtsServer(OneAtATimeServer):
    """Streaming speech synthesis over WebSocket; see the module docstring."""

    endpoint = "/api/tts"

    def __init__(self, synthesizer: Synthesizer, config: ServeConfig | None = None, model_name: str = ""):
        codec = synthesizer.codec
        super().__init__(config or ServeConfig(), model_name, codec.sample_rate, codec.frame_size)
        self.synthesizer = synthesizer
        self._session_synthesizer = synthesizer  # the session's voice (query parameters), else this one
        self._stream: tp.Any = None
        self._encoder: protocol.AudioEncoder | None = None
        self._seconds = 0.0

    def open_session(self, connection: tp.Any) -> None:
        self._encoder = protocol.AudioEncoder(self.sample_rate, _query(connection, "format") or "pcm16")
        self._stream, self._seconds = None, 0.0
        self._session_synthesizer = self._voiced(connection)

    def _voiced(self, connection: tp.Any) -> Synthesizer:
        """The server's synthesizer, or one speaking in the voice the session's query asks for."""
        asked: dict[str, tp.Any] = {}
        try:
            for name, kind in (("voice", str), ("pitch", int), ("rate", float)):
                value = _query(connection, name)
                if value is not None:
                    asked[name] = kind(value)
            if not asked:
                return self.synthesizer
            return Synthesizer(self.synthesizer.engine, dataclasses.replace(self.synthesizer.options, **asked))
        except ValueError as exc:  # not a number, an unknown voice, a model without named voices
            raise ProtocolError(f"voice: {exc}") from None

    def close_session(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def on_message(self, connection: tp.Any, message: protocol.Message) -> None:
        if message.kind == Kind.TEXT:
            try:
                text = message.payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("text is not UTF-8") from None
            if self._stream is None:
                self._stream = self._session_synthesizer.stream()
            try:
                self._stream.push_text(text)
            except TextError as exc:
                raise ProtocolError(str(exc)) from None
            await self._speak(connection)
        elif message.kind == Kind.CONTROL:
            request = protocol.control(message.payload)
            if request["type"] != "end":
                raise ProtocolError(f"unknown control type {request['type']!r} (expected end)")
            if self._stream is not None:
                self._stream.end_of_text()
                await self._speak(connection)
                self._stream.close()
                self._stream = None
            await connection.send(protocol.encode(Kind.METADATA, {"type": "done", "seconds": round(self._seconds, 3)}))
            self._seconds = 0.0
        else:
            raise ProtocolError(f"clients of {self.endpoint} send text and control messages, not "
                                f"{message.kind.name.lower()}")

    async def _speak(self, connection: tp.Any) -> None:
        """Step the synthesis as far as the text allows, sending its audio and words as they come."""
        assert self._encoder is not None
        stream, encoder = self._stream, self._encoder
        async for event in _in_thread(stream.events):
            if isinstance(event, AudioFrame):
                self.metrics.frames += 1
                self._seconds = event.start + event.pcm.shape[-1] / self.sample_rate
                data = encoder.encode(event.pcm.cpu().numpy())
                if data:
                    await connection.send(protocol.encode(Kind.AUDIO, data))
            elif isinstance(event, SpokenWord):
                await connection.send(protocol.encode(Kind.TEXT, event.text))
                await connection.send(protocol.encode(Kind.METADATA, {
                    "type": "word", "text": event.text, "start": round(event.start, 3)}))


class ChatServer(BatchedServer):
    """Full-duplex dialogue over WebSocket, up to ``config.max_sessions`` conversations in one batch (a
    :class:`~delaykit.serve.chat.ChatScheduler`); see the module docstring. ``conversation`` may also be a
    scheduler already made (the dialogue app shares one between its pages and its recording tab)."""

    endpoint = "/api/chat"
    sends_audio = True
    pings_follow_audio = True  # a ping is answered once every whole frame sent before it is answered

    def __init__(self, conversation: Conversation | ChatScheduler, config: ServeConfig | None = None,
                 model_name: str = ""):
        config = config or ServeConfig()
        scheduler = conversation if isinstance(conversation, ChatScheduler) else ChatScheduler(
            conversation, config.max_sessions, config.gather_seconds)
        super().__init__(scheduler, config, model_name)

    async def on_message(self, connection: tp.Any, link: Link, message: protocol.Message) -> None:
        if message.kind == Kind.AUDIO:
            await self._feed(connection, link, message.payload)
        elif message.kind == Kind.CONTROL:
            request = protocol.control(message.payload)
            if request["type"] != "reset":
                raise ProtocolError(f"unknown control type {request['type']!r} (expected reset)")
            self.scheduler.reset(link.session)
        elif message.kind == Kind.PING:
            self.scheduler.mark(link.session, message.payload)
        else:
            raise ProtocolError(f"clients of {self.endpoint} send audio and control messages, not "
                                f"{message.kind.name.lower()}")

    async def send_event(self, connection: tp.Any, link: Link, kind: str, event: tp.Any) -> None:
        if kind == "frame":
            if link.encoder is None:  # answer in the client's own format
                format = link.decoder.format or "pcm16"
                link.encoder = protocol.AudioEncoder(self.scheduler.sample_rate, format)
            data = link.encoder.encode(event.pcm)
            if data:
                await connection.send(protocol.encode(Kind.AUDIO, data))
            if event.piece:
                await connection.send(protocol.encode(Kind.TEXT, event.piece))
        elif kind == "mark":
            await connection.send(protocol.encode(Kind.PING, event))


async def _in_thread(produce: tp.Callable[[], tp.Iterator[tp.Any]]) -> tp.AsyncIterator[tp.Any]:
    """The items of ``produce()``, generated in a worker thread, as they come; if the consumer stops early the
    worker stops at its next item and is waited for (so the caller may then close what it was reading)."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    done = object()

    def run() -> None:
        try:
            for item in produce():
                loop.call_soon_threadsafe(items.put_nowait, item)
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            loop.call_soon_threadsafe(items.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(items.put_nowait, done)

    worker = loop.run_in_executor(None, run)
    try:
        while (item := await items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        await worker
