"""``delaykit serve`` for the modes that speak: streaming TTS (``/api/tts``) and full-duplex dialogue (``/api/chat``).

Both use the framing of :mod:`delaykit.serve.protocol` and hold up to ``max_sessions`` sessions, stepped
together in one batch, each answered exactly as it would be alone (a client past that gets a fatal ``busy``
error and close code 1013): ``/api/tts`` by a :class:`~delaykit.modes.tts_scheduler.SynthesisScheduler`
(a session waiting for its next words is left out of the steps meanwhile; sessions whose sampling settings
differ take turns), ``/api/chat`` by a :class:`~delaykit.serve.chat.ChatScheduler`. The model runs in a
worker thread, so the event loop keeps answering health checks and other clients meanwhile.

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
import contextlib
import dataclasses
import threading
import typing as tp
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed

from .. import __version__
from ..errors import TextError
from ..modes.dialogue import Conversation
from ..modes.script import parse_text
from ..modes.tts import AudioFrame, SpokenWord, Synthesizer
from ..modes.tts_scheduler import SynthesisRequest, SynthesisScheduler
from . import protocol
from .chat import ChatScheduler
from .protocol import Kind, ProtocolError
from .scheduler import Metrics
from .server import BatchedServer, Link, ServeConfig, ServerBase


def _query(connection: tp.Any, name: str) -> str | None:
    values = parse_qs(urlsplit(connection.request.path).query).get(name)
    return values[0] if values else None


@dataclass
class TtsSession:
    """One ``/api/tts`` client: its voice, its audio format, and the synthesis of its current text."""

    synthesizer: Synthesizer  # the server's, or one in the voice the session's query asks for
    encoder: protocol.AudioEncoder
    request: SynthesisRequest | None = None  # the text being spoken, from its first words to its "end"
    forwarder: asyncio.Task | None = None  # sends the request's audio and words as the scheduler makes them
    seconds: float = 0.0  # audio sent for the current text


class TtsServer(ServerBase):
    """Streaming speech synthesis over WebSocket, up to ``config.max_sessions`` sessions stepped in one batch
    by a :class:`~delaykit.modes.tts_scheduler.SynthesisScheduler`; see the module docstring."""

    endpoint = "/api/tts"

    def __init__(self, synthesizer: Synthesizer, config: ServeConfig | None = None, model_name: str = ""):
        config = config or ServeConfig()
        super().__init__(config, model_name)
        self.synthesizer = synthesizer
        self.sample_rate = synthesizer.codec.sample_rate
        self.frame_size = synthesizer.codec.frame_size
        self.scheduler = SynthesisScheduler(config.max_sessions)
        self.metrics = Metrics()

    def health(self) -> dict:
        return {"sessions": self.metrics.sessions, "capacity": self.scheduler.max_items}

    def metrics_text(self) -> str:
        batched = self.scheduler.metrics
        self.metrics.steps, self.metrics.max_batch = batched.steps, batched.max_batch
        return self.metrics.prometheus()

    def close(self) -> None:
        """Stop the scheduler's worker (the server's syntheses end)."""
        self.scheduler.close()

    async def handle(self, connection: tp.Any) -> None:
        if self.metrics.sessions >= self.scheduler.max_items:
            self.metrics.rejected_busy += 1
            await self._busy(connection, f"all {self.scheduler.max_items} sessions are in use: try again later")
            return
        self.metrics.sessions += 1
        self.metrics.sessions_total += 1
        session: TtsSession | None = None
        try:
            try:
                session = TtsSession(self._voiced(connection),
                                     protocol.AudioEncoder(self.sample_rate, _query(connection, "format") or "pcm16"))
            except ProtocolError as exc:
                await self._fatal(connection, str(exc))
                return
            handshake = {"sample_rate": self.sample_rate, "frame_size": self.frame_size, "model": self.model_name,
                         "version": __version__}
            await connection.send(protocol.encode(Kind.HANDSHAKE, handshake))
            await self._receive_loop(connection, self.metrics,
                                     lambda message: self.on_message(connection, session, message))
        finally:
            if session is not None:
                await self._drop_text(session)
            self.metrics.sessions -= 1

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

    async def on_message(self, connection: tp.Any, session: TtsSession, message: protocol.Message) -> None:
        if message.kind == Kind.TEXT:
            try:
                text = message.payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("text is not UTF-8") from None
            try:
                items = parse_text(text)
                session.synthesizer.script_tokenizer().entries(items)  # refuse a word it cannot spell, here
            except TextError as exc:
                raise ProtocolError(str(exc)) from None
            if session.request is None:
                session.request = self.scheduler.submit(session.synthesizer, items, more_text=True)
                session.forwarder = asyncio.create_task(self._forward(connection, session, session.request))
            else:
                session.request.push_items(items)
        elif message.kind == Kind.CONTROL:
            request = protocol.control(message.payload)
            if request["type"] != "end":
                raise ProtocolError(f"unknown control type {request['type']!r} (expected end)")
            if session.request is not None:
                session.request.end_of_text()
                assert session.forwarder is not None
                await session.forwarder  # every event of the text is sent before "done"
                session.request = session.forwarder = None
            await connection.send(protocol.encode(Kind.METADATA, {"type": "done", "seconds": round(session.seconds, 3)}))
            session.seconds = 0.0
        else:
            raise ProtocolError(f"clients of {self.endpoint} send text and control messages, not "
                                f"{message.kind.name.lower()}")

    async def _forward(self, connection: tp.Any, session: TtsSession, request: SynthesisRequest) -> None:
        """Send the request's audio and words as the scheduler makes them, until its speech ends."""
        try:
            async for event in _in_thread(request.results):
                if isinstance(event, AudioFrame):
                    self.metrics.frames += 1
                    session.seconds = event.start + event.pcm.shape[-1] / self.sample_rate
                    data = session.encoder.encode(event.pcm.cpu().numpy())
                    if data:
                        await connection.send(protocol.encode(Kind.AUDIO, data))
                elif isinstance(event, SpokenWord):
                    await connection.send(protocol.encode(Kind.TEXT, event.text))
                    await connection.send(protocol.encode(Kind.METADATA, {
                        "type": "word", "text": event.text, "start": round(event.start, 3)}))
        except (ConnectionClosed, OSError):  # the client left: the session's end cancels the request
            pass
        except Exception as exc:  # noqa: BLE001  (the synthesis failed: the client is told, the session goes on)
            self.metrics.errors += 1
            await connection.send(protocol.encode(Kind.ERROR, {"error": f"synthesis failed: {exc}", "fatal": False}))

    async def _drop_text(self, session: TtsSession) -> None:
        """Free the session's slot (its client left mid-text) and wait for its forwarder to stop."""
        if session.request is not None:
            self.scheduler.cancel(session.request)
        if session.forwarder is not None:
            session.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # it is gone either way
                await session.forwarder
        session.request = session.forwarder = None


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
