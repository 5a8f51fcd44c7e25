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

When the connection is idle, a chunk goes out in one non-blocking ``send()`` instead
(:class:`~.direct_send.DirectWriter`, shared with the WebSocket frames of ``ws_send``).

While the body waits for frames, it does not have to wake for each one: the frames a run
appends then are taken by :meth:`ChunkWriter.take` (the buffer's *sink*,
runtime/buffer.py) and queued, and one flusher task per Trio run (:class:`Flusher`)
sends, in its next scheduler pass, what every connection has queued, each connection's
frames as one chunk. Per engine step that is one task wake-up for all the streams
instead of one per stream, and the sends go out back to back (sent one by one from each
run's task instead, interleaved with the event building, they cost more in the kernel
and the client on loopback: benchmarks/README.md). What the flusher cannot send whole
(the socket full, the connection busy or broken) is left to the body, which is woken
for it and sends it through ``protocol_send`` before anything else (Hypercorn reports
errors as ever); the stream's later frames wait in the buffer meanwhile, under its bound.

Everything else is Quart's own behaviour, kept: the body is closed (``aclose``: the
delivery is released, a foreground run ends with cause ``disconnect``) however sending
stops, and the last ``send`` is the shielded one of ``shield_last_send``.
"""

from __future__ import annotations

import logging
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

from .direct_send import DirectWriter, Flusher
from .streaming import SSEBody

log = logging.getLogger(__name__)

# h11 0.14-0.16 keep the writer of the message being sent here.
_CHUNKED_WRITER = getattr(getattr(h11, "_writers", None), "ChunkedWriter", None)


class ChunkWriter(DirectWriter):
    """Writes chunked-body frames straight to a Hypercorn HTTP/1.1 connection."""

    def __init__(self, stream: HTTPStream, protocol_send: Callable[[Event], Awaitable[None]]
                 ) -> None:
        super().__init__(protocol_send)
        self._stream = stream
        # Frames take() queued for the flusher; what of them the flusher could not send
        # (the body sends it before anything else); how to wake the body for that.
        self._queued: list[bytes] = []
        self._rest = b""
        self.wake: Callable[[], None] | None = None

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

    def take(self, data: bytes) -> bool:
        """The body's sink while it waits for frames (runtime/buffer.py), called in the
        task that appends them: ``data`` queued for the flusher (True), unless the
        connection is gone or the body still has to send what the flusher could not
        (False: the frame waits in the buffer for the body, which :meth:`write` s it)."""
        if self._rest or self._stream.closed or not self._direct or self.wake is None:
            return False
        if not self._queued:
            Flusher.of_run().add(self)
        self._queued.append(data)
        return True

    def flush(self) -> None:
        """The flusher's turn: what take() queued, sent now as one chunk if the socket
        takes it whole; else it is left (``_rest``) for the body, which is woken."""
        if not self._queued:
            return
        data = b"".join(self._queued)
        self._queued.clear()
        if self._stream.closed:
            return  # gone (as write() drops what comes after the client left)
        chunk = b"%x\r\n%s\r\n" % (len(data), data)
        sent = self._send_now(chunk)
        if sent < len(chunk):
            self._rest = chunk[sent:]
            assert self.wake is not None
            self.wake()

    def abandon(self) -> None:
        """Its flush failed (a bug): drop what is left so the body does not wait for it."""
        self._rest = b""
        if self.wake is not None:
            self.wake()

    async def _send_left(self) -> None:
        """What take() queued and the flusher has not sent (or could not): first, before
        any chunk of the body's own."""
        if self._queued:
            self.flush()  # not sent yet: now, or into _rest
        if self._rest:
            rest, self._rest = self._rest, b""
            # Shielded: a chunk already begun must be finished (as send_bytes does).
            with trio.CancelScope(shield=True):
                await self._send(RawData(data=rest))

    async def write(self, data: bytes) -> None:
        if self._stream.closed:
            return  # gone: Hypercorn tells the app (http.disconnect), which ends the body
        if self._queued or self._rest:
            await self._send_left()
        if not data:
            return  # woken for what the flusher left (an empty chunk would end the body)
        await self.send_bytes(b"%x\r\n%s\r\n" % (len(data), data))


class SSEConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection, sending SSE bodies through :class:`ChunkWriter`."""

    async def _send_response(self, send: ASGISendCallable, response: Any) -> None:
        body = getattr(response, "response", None)
        if not (isinstance(body, IterableBody) and isinstance(body.iter, SSEBody)):
            await super()._send_response(send, response)
            return
        sse = body.iter
        start = cast(HTTPResponseStartEvent, {
            "type": "http.response.start", "status": response.status_code,
            "headers": encode_headers(response.headers)})
        del response, body  # not held while the stream lasts (web/connection.py)
        try:
            await send(start)
            writer = ChunkWriter.find(send, cast(dict[str, Any], self.scope))
            if writer is not None:
                sse.sink, writer.wake = writer.take, sse.wake
            async for chunk in sse:
                if writer is not None:
                    await writer.write(chunk)
                else:
                    await send(cast(HTTPResponseBodyEvent, {
                        "type": "http.response.body", "body": chunk, "more_body": True}))
                # Not held while the body waits: an idle stream's last chunk is often its
                # first, response.created with the whole response (~2 KiB a stream).
                del chunk
        finally:
            await sse.aclose()
        await send(cast(HTTPResponseBodyEvent,
                        {"type": "http.response.body", "body": b"", "more_body": False}))
