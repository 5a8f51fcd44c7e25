"""How an SSE body reaches the socket: the hot path of every streamed event.

Quart sends a streaming body one chunk at a time through the ASGI ``send``: a message
dict per chunk, Hypercorn's ``Body`` event, its protocol dispatch, h11's ``Data`` event
and chunked writer, then the connection's locked, shielded ``send_all``. At one chunk per
engine step per stream that Python is about as much CPU as the ``send()`` system call
itself (benchmarks/README.md). So :class:`SSEConnection` (the app's
``asgi_http_class``) sends an :class:`~.streaming.SSEBody` itself:

- every frame that is ready goes out in one write (the body already joins them);
- on an HTTP/1.1 connection of Hypercorn's (checked by type, so another server, HTTP/2,
  HTTP/1.0 or a HEAD request takes the ASGI path unchanged), each chunk is framed here
  (``<size hex>\\r\\n<bytes>\\r\\n``, as h11's chunked writer does) and handed straight to
  the connection's ``protocol_send`` — the same lock, shielded scope and ``send_all``
  Hypercorn uses, so a broken connection is noticed and reported the same way. h11
  keeps no state per chunk of a chunked body, so skipping it for the chunks leaves it
  consistent: the start and the end of the response (``0\\r\\n\\r\\n``) still go through
  the ASGI ``send``, and h11.

When the connection is idle (Hypercorn's send lock free, nothing else sending), a chunk
is written with one non-blocking ``send()`` on the connection's socket, synchronously:
Hypercorn's ``protocol_send`` would take the lock (a scheduler pass), open a shielded
scope and ``send_all`` (another pass, in trio's ``_nonblocking_helper``) for the same
system call. Nothing awaits between the check and the ``send()``, so in Trio nothing
can interleave. Whatever is not plainly sent whole — the socket full (``EAGAIN``), a
partial write, an error — goes to ``protocol_send`` as before (a partial write's rest
shielded, so a chunk never goes out cut): Hypercorn waits for the socket, and meets and
reports a broken or closed connection itself, exactly as without the short path.

Everything else is Quart's own behaviour, kept: the body is closed (``aclose``: the
delivery is released, a foreground run ends with cause ``disconnect``) however sending
stops, and the last ``send`` is the shielded one of ``shield_last_send``.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import h11
import trio
from hypercorn.events import Event, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.typing import ASGISendCallable, HTTPResponseBodyEvent, HTTPResponseStartEvent
from quart.utils import encode_headers
from quart.wrappers.response import IterableBody
from quart_trio.asgi import TrioASGIHTTPConnection

from .streaming import SSEBody

# h11 0.14-0.16 keep the writer of the message being sent here.
_CHUNKED_WRITER = getattr(getattr(h11, "_writers", None), "ChunkedWriter", None)


class ChunkWriter:
    """Writes chunked-body frames straight to a Hypercorn HTTP/1.1 connection."""

    def __init__(self, stream: HTTPStream, protocol_send: Callable[[Event], Awaitable[None]]
                 ) -> None:
        self._stream = stream
        self._send = protocol_send
        # What the direct send() needs of Hypercorn's TCPServer (protocol_send's owner):
        # its send lock and its plain (not TLS) socket stream; without them, none.
        server = getattr(protocol_send, "__self__", None)
        lock = getattr(server, "send_lock", None)
        socket_stream = getattr(server, "stream", None)
        raw = getattr(getattr(socket_stream, "socket", None), "_sock", None)
        self._direct = (isinstance(lock, trio.Lock) and isinstance(socket_stream, trio.SocketStream)
                        and isinstance(raw, socket.socket))
        self._lock = lock
        self._socket_stream = socket_stream
        self._raw = raw
        self._schedule_points = -1

    @classmethod
    def find(cls, send: ASGISendCallable, scope: dict[str, Any]) -> ChunkWriter | None:
        """The writer for this response, or None where only the ASGI ``send`` will do."""
        send = getattr(send, "inner", send)  # under shield_last_send
        stream = getattr(send, "__self__", None)
        if (_CHUNKED_WRITER is None or not isinstance(stream, HTTPStream)
                or scope.get("http_version") != "1.1" or scope.get("method") == "HEAD"):
            return None
        protocol = getattr(stream.send, "__self__", None)
        if not isinstance(protocol, H11Protocol):
            return None
        connection = protocol.connection
        if (not isinstance(connection, h11.Connection) or connection.our_state is not h11.SEND_BODY
                or not isinstance(getattr(connection, "_writer", None), _CHUNKED_WRITER)):
            return None
        return cls(stream, protocol.send)

    async def write(self, data: bytes) -> None:
        if self._stream.closed:
            return  # gone: Hypercorn tells the app (http.disconnect), which ends the body
        chunk = b"%x\r\n%s\r\n" % (len(data), data)
        sent = self._send_now(chunk)
        if sent == len(chunk):
            await self._checkpoint()
        elif sent:
            # Part of the chunk is out: the rest must follow, or the body is cut mid-chunk
            # (Hypercorn shields its send_all for the same reason).
            with trio.CancelScope(shield=True):
                await self._send(RawData(data=chunk[sent:]))
        else:
            await self._send(RawData(data=chunk))

    def _send_now(self, chunk: bytes) -> int:
        """The bytes of ``chunk`` one non-blocking ``send()`` wrote, if the connection is
        idle (0 where it is not, and on any error: ``protocol_send`` then meets the error
        again and reports it as Hypercorn does)."""
        if not self._direct:
            return 0
        assert isinstance(self._socket_stream, trio.SocketStream)
        assert isinstance(self._lock, trio.Lock) and isinstance(self._raw, socket.socket)
        # Busy: another task is sending (holds the lock), or in the stream's send_eof
        # (Hypercorn's close, outside the lock: trio's conflict detector would raise).
        if (self._lock.locked() or self._socket_stream.socket.did_shutdown_SHUT_WR
                or getattr(getattr(self._socket_stream, "_send_conflict_detector", None),
                           "_held", True)):
            return 0
        try:
            return self._raw.send(chunk)
        except OSError:  # BlockingIOError (the socket is full) included
            return 0

    async def _checkpoint(self) -> None:
        """After a direct send: a cancellation point, as protocol_send's lock was; and a
        scheduler pass only if this task has had none since its last direct send (the
        body waits for the buffer between live events, so normally not; a reader that
        finds frames ready every time, such as a replay, would otherwise never yield).
        Trio counts a task's passes in ``_schedule_points`` (trio.testing's
        assert_checkpoints reads it); without it, every direct send yields."""
        task = trio.lowlevel.current_task()
        points = getattr(task, "_schedule_points", None)
        if points is None or points == self._schedule_points:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        self._schedule_points = getattr(task, "_schedule_points", -1)


class SSEConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection, sending SSE bodies through :class:`ChunkWriter`."""

    async def _send_response(self, send: ASGISendCallable, response: Any) -> None:
        body = getattr(response, "response", None)
        if not (isinstance(body, IterableBody) and isinstance(body.iter, SSEBody)):
            await super()._send_response(send, response)
            return
        sse = body.iter
        try:
            await send(cast(HTTPResponseStartEvent, {
                "type": "http.response.start", "status": response.status_code,
                "headers": encode_headers(response.headers)}))
            writer = ChunkWriter.find(send, cast(dict[str, Any], self.scope))
            async for chunk in sse:
                if writer is not None:
                    await writer.write(chunk)
                else:
                    await send(cast(HTTPResponseBodyEvent, {
                        "type": "http.response.body", "body": chunk, "more_body": True}))
        finally:
            await sse.aclose()
        await send(cast(HTTPResponseBodyEvent,
                        {"type": "http.response.body", "body": b"", "more_body": False}))
