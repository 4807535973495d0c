"""A delaykit server's WebSocket endpoint inside an ASGI app (Starlette, FastAPI, Gradio's server).

The servers of :mod:`delaykit.serve` are written against the ``websockets`` library's connection (``recv``,
``send``, ``close``, ``request.path``); :class:`StarletteConnection` gives a Starlette WebSocket that face,
so the same session code serves ``delaykit serve`` and an app's route: ``route(server)`` is a Starlette
``WebSocketRoute`` at ``server.endpoint``.
"""

from __future__ import annotations

import contextlib
import typing as tp
from types import SimpleNamespace

from websockets.exceptions import ConnectionClosed

if tp.TYPE_CHECKING:  # pragma: no cover
    from starlette.websockets import WebSocket

    from .server import ServerBase


class StarletteConnection:
    """A Starlette WebSocket, accepted, as a ``websockets`` server connection."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        query = websocket.url.query
        self.request = SimpleNamespace(path=websocket.url.path + (f"?{query}" if query else ""),
                                       headers=websocket.headers)

    async def recv(self) -> bytes | str:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise ConnectionClosed(None, None)
        return message["bytes"] if message.get("bytes") is not None else message.get("text", "")

    async def send(self, data: bytes) -> None:
        try:
            await self.websocket.send_bytes(data)
        except Exception as exc:  # Starlette and the ASGI server raise several kinds once closed
            raise ConnectionClosed(None, None) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(Exception):  # already closed (each layer says so its own way)
            await self.websocket.close(code, reason)


def route(server: ServerBase, path: str | None = None) -> tp.Any:
    """A Starlette ``WebSocketRoute`` serving ``server``'s sessions at ``path`` (its endpoint by default)."""
    from starlette.routing import WebSocketRoute

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await server.handle(StarletteConnection(websocket))

    return WebSocketRoute(path or server.endpoint, endpoint)
