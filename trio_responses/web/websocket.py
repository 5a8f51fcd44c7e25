"""WebSocket transport: ``GET /v1/responses`` upgraded, over :class:`SocketSession`.

The upgrade passes the same gateway as any HTTP request (``web/routes.py``: host check,
API key, owner) and counts against the key's requests per minute; refusals are HTTP
answers to the upgrade (401, 429, ...) in OpenAI's error shape. Accepted, the socket
carries one client event per text message and one server event per text message: the
same JSON as the SSE ``data:`` (sliced out of the frames, not encoded again) with the
lane's ``stream_id`` added, no ``[DONE]``. Heartbeats are WebSocket pings (Hypercorn's
``websocket_ping_interval``), so the runs send none.

On a Hypercorn HTTP/1.1 connection without extensions, the events go out as pre-built
frames written straight to the connection, all the ready frames of all lanes in one write
(:mod:`.ws_send`); elsewhere through Quart's ``websocket.send``, serialized with a lock
(lanes send concurrently on one socket). Either way a client that stops reading blocks
its lanes' sends; each lane's run then overflows its stream buffer and ends, as an SSE
stream's would.

A disconnect reaches the session as soon as Hypercorn reports it (:class:`SocketConnection`
watches the ASGI ``receive``): every lane's run is ended at once, before Quart cancels
the handler and the lanes unwind, so a dropped socket's engine requests are aborted one
scheduler pass sooner (in a storm of drops, each pass is long).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable
from quart import g, websocket
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIWebsocketConnection

from ..protocol.request import CreateResponseRequest
from ..protocol.sse import encode_json, frame_payload
from ..runtime.buffer import Frame
from ..runtime.delivery import Delivery
from ..runtime.socket_session import SocketSession
from .state import AppState
from .ws_send import FrameWriter, decline_extensions, text_frame

# Where SocketConnection puts itself in the scope, for the route.
CONNECTION_KEY = "trio_responses.socket_connection"


def lane_payload(frame: Frame, stream_id: str | None) -> bytes:
    """A response event's frame as its WebSocket text (UTF-8): the frame's JSON, with the
    lane's ``stream_id`` spliced in before the closing brace (a stream_id needs no
    escaping)."""
    return lane_payload_of(frame.data, stream_id)


def lane_payload_of(data: bytes, stream_id: str | None) -> bytes:
    payload = frame_payload(data)
    if stream_id is not None:
        payload = b'%s,"stream_id":"%s"}' % (payload[:-1], stream_id.encode())
    return payload


def lane_message(frame: Frame, stream_id: str | None) -> str:
    return lane_payload(frame, stream_id).decode()


class WebSocketSink:
    def __init__(self, send: Callable[[str], Any], writer: FrameWriter | None = None) -> None:
        self._send = send
        self._writer = writer
        self._lock = trio.Lock()

    async def send_frames(self, frames: Sequence[Frame], stream_id: str | None) -> None:
        # Heartbeat comments (event None) are not sent: a socket's are pings.
        if self._writer is not None:
            data = b"".join([text_frame(lane_payload(f, stream_id))
                             for f in frames if f.event is not None])
            if data:
                await self._writer.write(data)
            return
        messages = [lane_message(f, stream_id) for f in frames if f.event is not None]
        async with self._lock:
            for message in messages:
                await self._send(message)

    async def next_frames(self, delivery: Delivery, stream_id: str | None) -> list[Frame]:
        """The lane's next frames from ``delivery``; on the short path, the frames that
        come while it waits go out from the flusher (web/ws_send.py) instead."""
        writer = self._writer
        if writer is None or not writer.direct:
            return await delivery.next()

        def sink(data: bytes) -> bool:
            if data[:1] == b":":
                return True  # a heartbeat comment: a socket's are pings (none are sent)
            return writer.take(text_frame(lane_payload_of(data, stream_id)))

        while True:
            with trio.CancelScope() as waiting:
                writer.waits.add(waiting)
                try:
                    frames = await delivery.next(sink)
                finally:
                    writer.waits.discard(waiting)
            if not waiting.cancelled_caught:
                break
            # Woken: the flusher left bytes to finish; send them, then wait on.
            await writer.write(b"")
        if not frames:
            # The response is over: its last frames may still be queued for the flusher
            # or left by it, and this lane may be the last to wake for them.
            await writer.write(b"")
        return frames

    async def send_event(self, event: Mapping[str, Any]) -> None:
        if self._writer is not None:
            await self._writer.write(text_frame(encode_json(event)))
            return
        message = encode_json(event).decode()
        async with self._lock:
            await self._send(message)


class SocketConnection(TrioASGIWebsocketConnection):
    """Quart-Trio's WebSocket connection (the app's ``asgi_websocket_class``), keeping its
    ASGI ``send`` for :meth:`FrameWriter.find` and calling ``on_disconnect`` as soon as
    the server reports the disconnect.

    It declines permessage-deflate (Hypercorn would accept a client's offer, and the
    websockets library, under the openai SDK, offers it by default): compressing costs
    server CPU on every event, mostly small deltas, and a compressor and a decompressor
    per connection (zlib's, ~300 KiB with the default window and context takeover); the
    frames could then not be written as they are. Declining is the protocol's normal
    answer (RFC 7692): the client sends and receives uncompressed frames."""

    asgi_send: ASGISendCallable | None = None
    on_disconnect: Callable[[], None] | None = None

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        self.asgi_send = send
        decline_extensions(send)
        cast(dict[str, Any], self.scope)[CONNECTION_KEY] = self

        async def watched() -> ASGIReceiveEvent:
            event = await receive()
            if event["type"] == "websocket.disconnect" and self.on_disconnect is not None:
                self.on_disconnect()
            return event

        await super().__call__(watched, send)


def register_websocket_routes(app: QuartTrio, state: AppState,
                              parse_create: Callable[[bytes], CreateResponseRequest],
                              upgrade_headers: Callable[[], dict[str, str]]) -> None:
    @app.websocket("/v1/responses")
    async def responses_socket() -> None:
        service = state.service
        service.count_request(g.owner)  # the upgrade is a request: 429 past the limit
        await websocket.accept(headers=upgrade_headers())
        connection = cast(dict[str, Any], websocket.scope).get(CONNECTION_KEY)
        writer = None
        if isinstance(connection, SocketConnection) and connection.asgi_send is not None:
            writer = FrameWriter.find(connection.asgi_send)
        session = SocketSession(service, g.owner, WebSocketSink(websocket.send, writer),
                                parse_create=parse_create)
        if isinstance(connection, SocketConnection):
            connection.on_disconnect = session.disconnected
        await session.serve(websocket.receive)
