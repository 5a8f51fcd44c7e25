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
  of a broken connection;
- while a lane waits for its run's frames, the frames that come are framed and taken in
  the run's task (the buffer's sink) and one flusher task sends what every connection
  took (:class:`~.direct_send.Flusher`, as for SSE): one task wake-up per engine step for
  all the lanes instead of one per lane. What it cannot send whole, a lane is woken for.

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
from hypercorn.events import Event, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState

from .direct_send import DirectWriter, Flusher


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
        # Frames take() queued for the flusher; what of them it could not send (a lane
        # sends it before anything else); the waits of the lanes to wake for that.
        self._queued: list[bytes] = []
        self._rest = b""
        self.waits: set[trio.CancelScope] = set()

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

    @property
    def direct(self) -> bool:
        """Whether frames may go out from the flusher (a plain socket of Hypercorn's)."""
        return self._direct

    def take(self, frames: bytes) -> bool:
        """A waiting lane's sink (runtime/buffer.py), called in the task that appends the
        lane's frames: ``frames`` queued for the :class:`Flusher` (True), unless the
        connection is closing or gone, a lane is writing, or the flusher left bytes to
        finish (False: the frame waits in the lane's buffer, the lane writes it)."""
        if self._rest or self._writing or self._pending or not self._direct or not self.open:
            return False
        if not self._queued:
            Flusher.of_run().add(self)
        self._queued.append(frames)
        return True

    def flush(self) -> None:
        """The flusher's turn: what take() queued, sent now if the socket takes it whole;
        else the rest is left for a lane, which is woken for it."""
        if not self._queued:
            return
        data = b"".join(self._queued)
        self._queued.clear()
        if not self.open:
            return  # dropped, as write() drops what comes once the close began
        sent = self._send_now(data)
        if sent < len(data):
            self._rest = data[sent:]
            self._wake()

    def abandon(self) -> None:
        self._queued.clear()
        self._rest = b""
        self._wake()

    def _wake(self) -> None:
        for scope in self.waits:
            scope.cancel()

    async def write(self, frames: bytes) -> None:
        """Send ``frames`` (whole frames; none: only what the flusher queued or left),
        after what the flusher has not sent and with whatever other lanes have ready;
        returns once they are written (or dropped, the connection being closed)."""
        if frames:
            self._pending.append(frames)
        batch = self._taken + 1  # the batch that will carry these frames
        while self._writing:
            await self._waiting.park()
            if self._written >= batch:
                return
        if not (self._pending or self._queued or self._rest):
            return  # nothing, or taken by a writer that was cancelled (the connection ends)
        # Nobody writing: write all that is waiting, these frames included, after what
        # the flusher left or has not sent yet (a lane's frames stay in order).
        self._writing = True
        try:
            rest, self._rest = self._rest, b""
            data = rest + b"".join([*self._queued, *self._pending])
            self._queued.clear()
            self._pending.clear()
            self._taken += 1
            if self.open:
                if rest:
                    # A frame already begun must be finished (as send_bytes does).
                    with trio.CancelScope(shield=True):
                        await self._send(RawData(data=data))
                else:
                    await self.send_bytes(data)
            self._written = self._taken
        finally:
            self._writing = False
            # Those whose frames went out return; the first of the others writes next.
            self._waiting.unpark_all()
