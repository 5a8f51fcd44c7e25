"""WebSocket transport: ``GET /v1/responses`` upgraded, over :class:`SocketSession`.

The upgrade passes the same gateway as any HTTP request (``web/routes.py``: host check,
API key, owner) and counts against the key's requests per minute; refusals are HTTP
answers to the upgrade (401, 429, ...) in OpenAI's error shape. Accepted, the socket
carries one client event per text message and one server event per text message: the
same JSON as the SSE ``data:`` (sliced out of the frames, not encoded again) with the
lane's ``stream_id`` added, no ``[DONE]``. Heartbeats are WebSocket pings (Hypercorn's
``websocket_ping_interval``), so the runs send none.

Sends are serialized with a lock (lanes send concurrently on one socket). A client that
stops reading blocks its lanes' sends; each lane's run then overflows its stream buffer
and ends, as an SSE stream's would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio
from quart import g, websocket
from quart_trio import QuartTrio

from ..protocol.request import CreateResponseRequest
from ..protocol.sse import encode_json, frame_payload
from ..runtime.buffer import Frame
from ..runtime.socket_session import SocketSession
from .state import AppState


def lane_message(frame: Frame, stream_id: str | None) -> str:
    """A response event's frame as its WebSocket text: the frame's JSON, with the lane's
    ``stream_id`` spliced in before the closing brace (a stream_id needs no escaping)."""
    payload = frame_payload(frame.data)
    if stream_id is not None:
        payload = b'%s,"stream_id":"%s"}' % (payload[:-1], stream_id.encode())
    return payload.decode()


class WebSocketSink:
    def __init__(self, send: Callable[[str], Any]) -> None:
        self._send = send
        self._lock = trio.Lock()

    async def send_frames(self, frames: Sequence[Frame], stream_id: str | None) -> None:
        # Heartbeat comments (event None) are not sent: a socket's are pings.
        messages = [lane_message(f, stream_id) for f in frames if f.event is not None]
        async with self._lock:
            for message in messages:
                await self._send(message)

    async def send_event(self, event: Mapping[str, Any]) -> None:
        message = encode_json(event).decode()
        async with self._lock:
            await self._send(message)


def register_websocket_routes(app: QuartTrio, state: AppState,
                              parse_create: Callable[[bytes], CreateResponseRequest],
                              upgrade_headers: Callable[[], dict[str, str]]) -> None:
    @app.websocket("/v1/responses")
    async def responses_socket() -> None:
        service = state.service
        service.count_request(g.owner)  # the upgrade is a request: 429 past the limit
        await websocket.accept(headers=upgrade_headers())
        session = SocketSession(service, g.owner, WebSocketSink(websocket.send),
                                parse_create=parse_create)
        await session.serve(websocket.receive)
