"""The wire format of ``delaykit serve``: Kyutai's kind-byte framing over WebSocket binary messages.

Every message is one kind byte and a payload:

====  ==========  ==========================================================================================
kind  name        payload
====  ==========  ==========================================================================================
0x00  handshake   server -> client once the session has a slot: JSON ``{"sample_rate", "frame_size",
                  "model", "version"}``
0x01  audio       client -> server: raw little-endian 16-bit mono PCM at ``sample_rate`` (any whole number of
                  samples per message), or an Ogg/Opus stream cut anywhere (what Kyutai's web client sends);
                  the session's first audio message decides which (Ogg pages begin with ``OggS``)
0x02  text        server -> client: UTF-8 text of one recognised word
0x03  control     client -> server: JSON ``{"type": "end"}`` (flush: the last words come out, then
                  ``{"type": "flushed"}`` and the session starts afresh) or ``{"type": "reset"}``
0x04  metadata    server -> client: JSON events: ``{"type": "word", "text", "start", "end"}`` (seconds of the
                  session's audio), ``{"type": "end_of_speech", "time", "probability"}``, ``{"type":
                  "flushed"}``, ``{"type": "behind", "buffered_seconds"}`` (backpressure: reading paused)
0x05  error       server -> client: JSON ``{"error": message, "fatal": bool}``; fatal errors close the socket
0x06  ping        either way: answered with a ping carrying the same payload
====  ==========  ==========================================================================================

Opus is decoded by ``sphn`` (Kyutai's audio I/O library, part of the ``serve`` extra), which reads an Ogg/Opus
stream incrementally; raw PCM needs nothing beyond NumPy.
"""

from __future__ import annotations

import enum
import json
import typing as tp
from dataclasses import dataclass

import numpy as np

from ..audio import float_to_pcm16


class Kind(enum.IntEnum):
    HANDSHAKE = 0
    AUDIO = 1
    TEXT = 2
    CONTROL = 3
    METADATA = 4
    ERROR = 5
    PING = 6


class ProtocolError(ValueError):
    """A message the server cannot take (the session goes on unless it says fatal)."""


@dataclass(frozen=True)
class Message:
    kind: Kind
    payload: bytes


def encode(kind: Kind, payload: bytes | str | dict = b"") -> bytes:
    """One message: the kind byte, then the payload (dicts as JSON, str as UTF-8)."""
    if isinstance(payload, dict):
        payload = json.dumps(payload, separators=(",", ":"))
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return bytes([kind]) + payload


def decode(data: bytes | str) -> Message:
    """Parse one received message; raises ProtocolError on anything malformed."""
    if isinstance(data, str):
        raise ProtocolError("expected binary messages (kind byte + payload), got a text message")
    if not data:
        raise ProtocolError("empty message: expected a kind byte")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise ProtocolError(f"unknown message kind 0x{data[0]:02x}") from None
    return Message(kind, bytes(data[1:]))


def pcm16_to_float(payload: bytes) -> np.ndarray:
    """Samples [T] float32 in [-1, 1) of a 16-bit little-endian PCM payload."""
    if len(payload) % 2:
        raise ProtocolError(f"audio payload of {len(payload)} bytes is not whole 16-bit samples")
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


class AudioDecoder:
    """One session's incoming audio as float32 samples at ``sample_rate``, raw PCM16 or Ogg/Opus (module
    docstring); an Opus stream is decoded as its bytes arrive, whatever the cuts between messages."""

    OGG_MAGIC = b"OggS"

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.format: str | None = None  # "pcm16" or "opus", from the first audio message
        self._opus: tp.Any = None

    def decode(self, payload: bytes) -> np.ndarray:
        """Samples [T] float32 of one audio message (T may be 0 while an Opus packet is incomplete)."""
        if self.format is None:
            if payload[:4] == self.OGG_MAGIC:
                try:
                    import sphn
                except ImportError:
                    raise ProtocolError("Ogg/Opus audio needs the sphn package on the server: "
                                        "pip install 'delaykit[serve]' (or send 16-bit PCM)") from None
                self._opus = sphn.OpusStreamReader(self.sample_rate)
                self.format = "opus"
            else:
                self.format = "pcm16"
        if self.format == "pcm16":
            return pcm16_to_float(payload)
        try:
            pcm = self._opus.append_bytes(payload)
        except Exception as exc:  # noqa: BLE001 - sphn raises its own types for data that is not Ogg/Opus
            raise ProtocolError(f"audio is not a valid Ogg/Opus stream ({exc})") from None
        return np.asarray(pcm, dtype=np.float32).reshape(-1)


class AudioEncoder:
    """Outgoing audio of one session, as 16-bit PCM or as one Ogg/Opus stream (``format``: pcm16 | opus).
    ``encode(pcm)`` takes whole frames (an Opus packet per 80 ms frame) and returns the bytes to send, which
    may be empty while Opus fills an Ogg page."""

    def __init__(self, sample_rate: int, format: str = "pcm16"):
        if format not in ("pcm16", "opus"):
            raise ProtocolError(f"unknown audio format {format!r} (expected pcm16 or opus)")
        self.format = format
        self._opus: tp.Any = None
        if format == "opus":
            try:
                import sphn
            except ImportError:
                raise ProtocolError("Ogg/Opus audio needs the sphn package on the server: "
                                    "pip install 'delaykit[serve]' (or ask for pcm16)") from None
            self._opus = sphn.OpusStreamWriter(sample_rate)

    def encode(self, pcm: np.ndarray) -> bytes:
        samples = np.asarray(pcm, dtype=np.float32).reshape(-1)  # [T]
        if self._opus is None:
            return float_to_pcm16(samples)
        return bytes(self._opus.append_pcm(np.clip(samples, -1.0, 1.0)))


def control(payload: bytes) -> dict:
    """A control message's JSON object."""
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"control payload is not UTF-8 JSON ({exc})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('control payload must be a JSON object with a "type"')
    return message
