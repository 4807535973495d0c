"""``delaykit serve``: WebSocket streaming recognition for many clients at once, plus health and metrics.

Endpoints (HTTP on the same port):

* ``GET /api/asr`` (WebSocket upgrade): a streaming recognition session, in the framing of
  :mod:`delaykit.serve.protocol`. With an API token configured, the client passes ``?token=...`` or an
  ``Authorization: Bearer ...`` header.
* ``GET /health``: ``200 ok`` with a JSON body (model, sessions, capacity).
* ``GET /metrics``: Prometheus text format (sessions, steps, step time, frames, rejections, errors, drops).

Every session is an item of one batched stream (:class:`~delaykit.serve.scheduler.AsrScheduler`). A client
that sends faster than the server steps is slowed down, never dropped: past ``max_buffered_seconds`` of
unprocessed audio the server stops reading its socket (TCP backpressure) and says so with a ``behind``
event. Idle sessions (no message for ``idle_timeout`` seconds) and sessions older than ``max_session_seconds``
are closed cleanly. Binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import typing as tp
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed

from .. import __version__
from ..modes.asr import EndOfSpeech, Transcriber, Word
from . import protocol
from .protocol import Kind, ProtocolError
from .scheduler import AsrScheduler, Busy, Session, asyncio_delivery

log = logging.getLogger("delaykit.serve")


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8998
    max_sessions: int = 16
    token: str | None = None  # required from clients when set
    max_message_bytes: int = 1 << 20  # one message; ~21 s of 24 kHz PCM16
    max_buffered_seconds: float = 2.0  # unprocessed audio per session before reading pauses
    idle_timeout: float = 60.0  # seconds without a client message
    max_session_seconds: float = 3600.0 * 4
    # A session's ready frame waits up to this long for the other sessions' frames, so that clients sending
    # out of phase share one batched step (see BatchScheduler.gather_seconds); adds at most this to latency.
    gather_seconds: float = 0.05


class ServerBase:
    """What every endpoint's server shares: HTTP routes (its WebSocket endpoint, ``/health``, ``/metrics``),
    the API token, fatal errors and the serve loop. Subclasses set ``endpoint`` and implement ``handle``,
    ``health`` and ``metrics_text``."""

    endpoint = ""
    pings_follow_audio = False  # True: pings go to the handler (answered after the audio sent before them)

    def __init__(self, config: ServeConfig, model_name: str):
        self.config = config
        self.model_name = model_name

    def health(self) -> dict:
        raise NotImplementedError

    def metrics_text(self) -> str:
        raise NotImplementedError

    async def handle(self, connection: tp.Any) -> None:
        raise NotImplementedError

    # -- HTTP ---------------------------------------------------------------------------------------------

    def process_request(self, connection: tp.Any, request: tp.Any) -> tp.Any:
        path = urlsplit(request.path).path
        if path == "/health":
            body = {"status": "ok", "model": self.model_name, "endpoint": self.endpoint, **self.health()}
            return connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
        if path == "/metrics":
            return connection.respond(HTTPStatus.OK, self.metrics_text())
        if path != self.endpoint:
            return connection.respond(HTTPStatus.NOT_FOUND,
                                      f"not found: try {self.endpoint}, /health or /metrics\n")
        if self.config.token is not None and not self._authorized(request):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API token\n")
        return None  # go on with the WebSocket handshake

    def _authorized(self, request: tp.Any) -> bool:
        assert self.config.token is not None
        given = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer "):]
        return hmac.compare_digest(given.encode(), self.config.token.encode())

    async def _fatal(self, connection: tp.Any, reason: str) -> None:
        await connection.send(protocol.encode(Kind.ERROR, {"error": reason, "fatal": True}))
        await connection.close(1000, reason[:120])

    async def _receive_loop(self, connection: tp.Any, metrics: tp.Any,
                            handle: tp.Callable[[protocol.Message], tp.Awaitable[None]]) -> None:
        """``handle`` each of the session's messages (pings are answered here) until the client leaves, goes
        idle or runs out of session time (the last two end it with a fatal error). A malformed message, or one
        whose handling raises ProtocolError, gets a non-fatal error (counted in ``metrics.errors``) and the
        session goes on."""
        started = time.monotonic()
        while True:
            if time.monotonic() - started > self.config.max_session_seconds:
                await self._fatal(connection, "session time limit reached")
                return
            try:
                data = await asyncio.wait_for(connection.recv(), self.config.idle_timeout)
            except TimeoutError:
                await self._fatal(connection, f"no message for {self.config.idle_timeout:g} s")
                return
            except (ConnectionClosed, OSError):  # the client went away (closed, reset, half-open)
                return
            try:
                message = protocol.decode(data)
                if message.kind == Kind.PING and not self.pings_follow_audio:
                    await connection.send(protocol.encode(Kind.PING, message.payload))
                else:
                    await handle(message)
            except ProtocolError as exc:
                metrics.errors += 1
                try:
                    await connection.send(protocol.encode(Kind.ERROR, {"error": str(exc), "fatal": False}))
                except (ConnectionClosed, OSError):
                    return
            except (ConnectionClosed, OSError):  # it left while its message was answered (e.g. "behind")
                return

    async def _busy(self, connection: tp.Any, reason: str) -> None:
        await connection.send(protocol.encode(Kind.ERROR, {"error": reason, "fatal": True}))
        await connection.close(1013, "busy")

    # -- running ------------------------------------------------------------------------------------------

    async def serve(self, ready: tp.Callable[[int], None] | None = None,
                    stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set (forever when None); ``ready(port)`` is called once listening."""
        from websockets.asyncio.server import serve

        async with serve(self.handle, self.config.host, self.config.port, process_request=self.process_request,
                         max_size=self.config.max_message_bytes, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            log.info("listening on %s:%d%s", self.config.host, port, self.endpoint)
            if ready is not None:
                ready(port)
            await (stop.wait() if stop is not None else asyncio.get_running_loop().create_future())

    def close(self) -> None:
        """Release what the server holds (threads, sessions)."""


@dataclass
class Link:
    """One connected client of a batched server: its session and its audio codecs."""

    session: Session
    decoder: protocol.AudioDecoder  # the client's audio (pcm16 or Ogg/Opus, from its first message)
    format: str | None = None  # the audio it asked for (``?format=``); None: its own format
    encoder: protocol.AudioEncoder | None = None  # audio sent back, made on the first use


class BatchedServer(ServerBase):
    """A server whose sessions are items of one batched stream (``scheduler``): admission, handshake, the
    receive loop with backpressure, and a sender task per session. Subclasses implement ``on_message`` and
    ``send_event``; those that send audio back set ``sends_audio`` (the client may then ask for a format
    with ``?format=pcm16|opus``)."""

    sends_audio = False

    def __init__(self, scheduler: tp.Any, config: ServeConfig, model_name: str):
        super().__init__(config, model_name)
        self.scheduler = scheduler

    def health(self) -> dict:
        return {"sessions": self.scheduler.metrics.sessions, "capacity": self.scheduler.max_sessions}

    def metrics_text(self) -> str:
        return self.scheduler.metrics.prometheus()

    # -- WebSocket sessions -------------------------------------------------------------------------------

    async def handle(self, connection: tp.Any) -> None:
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()
        try:
            session = self.scheduler.admit(asyncio_delivery(outbox, loop))
        except Busy as exc:
            await self._busy(connection, str(exc))
            return
        link = Link(session, protocol.AudioDecoder(self.scheduler.sample_rate))
        if self.sends_audio:
            link.format = parse_qs(urlsplit(connection.request.path).query).get("format", [None])[0]
        sender = asyncio.create_task(self._send_events(connection, outbox, link))
        try:
            if link.format is not None:
                link.encoder = protocol.AudioEncoder(self.scheduler.sample_rate, link.format)
            handshake = {"sample_rate": self.scheduler.sample_rate, "frame_size": self.scheduler.frame_size,
                         "model": self.model_name, "version": __version__}
            await connection.send(protocol.encode(Kind.HANDSHAKE, handshake))
            await self._receive_loop(connection, self.scheduler.metrics,
                                     lambda message: self.on_message(connection, link, message))
        except ProtocolError as exc:
            await self._fatal(connection, str(exc))
        finally:
            self.scheduler.leave(session)
            sender.cancel()

    async def on_message(self, connection: tp.Any, link: Link, message: protocol.Message) -> None:
        raise NotImplementedError

    async def send_event(self, connection: tp.Any, link: Link, kind: str, event: tp.Any) -> None:
        raise NotImplementedError

    async def _feed(self, connection: tp.Any, link: Link, payload: bytes) -> None:
        """Decode a client's audio message into its session's buffer, then apply backpressure."""
        self.scheduler.feed(link.session, link.decoder.decode(payload))
        await self._backpressure(connection, link.session)

    async def _backpressure(self, connection: tp.Any, session: Session) -> None:
        """Stop reading while the session has more unprocessed audio than allowed; tell the client once."""
        limit = self.config.max_buffered_seconds
        if self.scheduler.buffered_seconds(session) <= limit:
            return
        await connection.send(protocol.encode(Kind.METADATA, {
            "type": "behind", "buffered_seconds": round(self.scheduler.buffered_seconds(session), 3)}))
        while self.scheduler.buffered_seconds(session) > limit / 2:
            await asyncio.sleep(0.02)

    async def _send_events(self, connection: tp.Any, outbox: asyncio.Queue, link: Link) -> None:
        while True:
            kind, event = await outbox.get()
            try:
                if kind == "error":
                    await connection.send(protocol.encode(Kind.ERROR, {"error": event, "fatal": False}))
                else:
                    await self.send_event(connection, link, kind, event)
            except (ConnectionClosed, OSError):  # the client is gone; the receiver notices and cleans up
                return

    def close(self) -> None:
        self.scheduler.close()


class AsrServer(BatchedServer):
    """The recognition server: a scheduler plus the WebSocket handler around it."""

    endpoint = "/api/asr"

    def __init__(self, transcriber: Transcriber, config: ServeConfig = ServeConfig(), model_name: str = ""):
        super().__init__(AsrScheduler(transcriber, config.max_sessions, config.gather_seconds), config, model_name)

    async def on_message(self, connection: tp.Any, link: Link, message: protocol.Message) -> None:
        if message.kind == Kind.AUDIO:
            await self._feed(connection, link, message.payload)
        elif message.kind == Kind.CONTROL:
            request = protocol.control(message.payload)
            if request["type"] == "end":
                self.scheduler.request(link.session, "flush")
            elif request["type"] == "reset":
                self.scheduler.request(link.session, "reset")
            else:
                raise ProtocolError(f"unknown control type {request['type']!r} (expected end or reset)")
        else:
            raise ProtocolError(f"clients do not send {message.kind.name.lower()} messages")

    async def send_event(self, connection: tp.Any, link: Link, kind: str, event: tp.Any) -> None:
        if kind == "event" and isinstance(event, Word):
            await connection.send(protocol.encode(Kind.TEXT, event.text))
            await connection.send(protocol.encode(Kind.METADATA, {
                "type": "word", "text": event.text, "start": round(event.start, 3),
                "end": round(event.end, 3)}))
        elif kind == "event" and isinstance(event, EndOfSpeech):
            await connection.send(protocol.encode(Kind.METADATA, {
                "type": "end_of_speech", "time": round(event.time, 3),
                "probability": round(event.probability, 4)}))
        elif kind == "flushed":
            await connection.send(protocol.encode(Kind.METADATA, {"type": "flushed"}))
