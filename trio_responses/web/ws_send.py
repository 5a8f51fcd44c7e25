"""How a WebSocket's server events reach the socket: the hot path of WebSocket mode.

Through Quart, every event is one ``websocket.send(str)``: Quart's send (an ``accept``
check, an ASGI message dict, a signal), Hypercorn's ``WSStream.app_send``, a wsproto
``TextMessage`` encoded and framed, a ``Data`` event through the HTTP/1.1 protocol's
dispatch, then the connection's locked, shielded ``send_all``. :class:`FrameWriter`
does what :mod:`.sse_send` does for SSE chunks:

- the text frames are built here: a server's frames are not masked, so a frame is a
  header by payload length (``0x81`` FIN + text, then the length in 7, 16 or 64 bits)
  and the event's JSON bytes as they are (sliced from the SSE frame, never decoded);
- all the frames that are ready, of every lane of the connection, go out in one write:
  a lane that finds a write in progress leaves its frames for the next one and waits
  until they are written (so a client that stops reading still blocks every lane, whose
  runs then overflow their stream buffers and end, as before);
- the write is one non-blocking ``send()`` on the connection's socket when it is idle
  (:class:`~.direct_send.DirectWriter`, as for SSE), otherwise the connection's
  ``protocol_send``: Hypercorn's send lock (pings, pongs and the close handshake go
  through it too, so frames never interleave), its shielded ``send_all``, its handling
  of a broken connection.

Only where the state allows: a Hypercorn WebSocket over HTTP/1.1 (checked by type; an
HTTP/2 WebSocket or another server takes the ASGI path, unchanged) with no extension in
use (permessage-deflate would have to compress each frame). wsproto keeps no state per
message it sends whole (only a fragmented message's opcode), so writing frames past it
leaves it consistent; what it does keep, the connection's state, is checked before each
write exactly as it would check it: once the close handshake began (either side) or
Hypercorn closed the stream, frames are dropped, as Hypercorn drops the ``send`` of a
closed stream and wsproto refuses data after a close.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.events import Event
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState

from .direct_send import DirectWriter


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (RFC 6455 section 5.2) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return b"\x81%c%s" % (size, payload)
    if size < 1 << 16:
        return b"\x81\x7e%s%s" % (size.to_bytes(2, "big"), payload)
    return b"\x81\x7f%s%s" % (size.to_bytes(8, "big"), payload)


def decline_extensions(send: Any) -> None:
    """Before the accept: answer the client's extension offers (permessage-deflate) with
    none, where ``send`` is that of a Hypercorn WebSocket (which negotiates at accept from
    the handshake it parsed)."""
    stream = getattr(send, "__self__", None)
    handshake = getattr(stream, "handshake", None)
    if isinstance(stream, WSStream) and handshake is not None:
        handshake.extensions = None


class FrameWriter(DirectWriter):
    """Writes pre-built frames straight to a Hypercorn HTTP/1.1 WebSocket connection,
    those of concurrent senders together."""

    def __init__(self, stream: WSStream, protocol_send: Callable[[Event], Awaitable[None]]
                 ) -> None:
        super().__init__(protocol_send)
        self._stream = stream
        self._pending: list[bytes] = []
        self._writing = False
        self._taken = 0  # batches taken from _pending to be written
        self._written = 0  # of those, written (or dropped: the connection was gone)
        self._waiting = trio.lowlevel.ParkingLot()

    @classmethod
    def find(cls, send: Any) -> FrameWriter | None:
        """The writer for the connection of this ASGI ``send``, or None where only the
        ASGI ``send`` will do. Call it once the connection is accepted."""
        stream = getattr(send, "__self__", None)
        if not isinstance(stream, WSStream) or stream.state is not ASGIWebsocketState.CONNECTED:
            return None
        protocol = getattr(stream.send, "__self__", None)
        if not isinstance(protocol, H11Protocol):
            return None
        # The extensions in use (wsproto's frame protocol keeps only the negotiated ones).
        if getattr(getattr(stream.connection, "_proto", None), "extensions", True):
            return None
        return cls(stream, protocol.send)

    @property
    def open(self) -> bool:
        """Whether data may still be sent: Hypercorn's stream not closed, and no close
        frame sent or received (wsproto's state)."""
        return not self._stream.closed and self._stream.connection.state is ConnectionState.OPEN

    async def write(self, frames: bytes) -> None:
        """Send ``frames`` (whole frames), with whatever other senders have ready; returns
        once they are written (or dropped, the connection being closed)."""
        self._pending.append(frames)
        batch = self._taken + 1  # the batch that will carry these frames
        while self._writing:
            await self._waiting.park()
            if self._written >= batch:
                return
        if not self._pending:
            return  # taken by a writer that was cancelled: the connection is ending
        # Nobody writing: write all that is pending, these frames included.
        self._writing = True
        try:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            self._taken += 1
            if self.open:
                await self.send_bytes(data)
            self._written = self._taken
        finally:
            self._writing = False
            # Those whose frames went out return; the first of the others writes next.
            self._waiting.unpark_all()
