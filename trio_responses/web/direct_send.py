"""Bytes straight to the socket of a Hypercorn connection, in one system call.

When the connection is idle (Hypercorn's send lock free, nothing else sending), the bytes
are written with one non-blocking ``send()`` on the connection's socket, synchronously:
Hypercorn's ``protocol_send`` would take the lock (a scheduler pass), open a shielded
scope and ``send_all`` (another pass, in trio's ``_nonblocking_helper``) for the same
system call. Nothing awaits between the check and the ``send()``, so in Trio nothing
can interleave. Whatever is not plainly sent whole — the socket full (``EAGAIN``), a
partial write, an error — goes to ``protocol_send`` as before (a partial write's rest
shielded, so a chunk or a frame never goes out cut): Hypercorn waits for the socket, and
meets and reports a broken or closed connection itself, exactly as without the short path.

Used by ``sse_send`` (HTTP/1.1 body chunks) and ``ws_send`` (WebSocket frames).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import trio
from hypercorn.events import Event, RawData


class DirectWriter:
    """Sends bytes to the connection of a Hypercorn ``protocol_send``: directly when the
    connection is idle, through ``protocol_send`` otherwise."""

    def __init__(self, protocol_send: Callable[[Event], Awaitable[None]]) -> None:
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

    async def send_bytes(self, data: bytes) -> None:
        sent = self._send_now(data)
        if sent == len(data):
            await self._checkpoint()
        elif sent:
            # Part of it is out: the rest must follow, or a chunk (a frame) is cut
            # (Hypercorn shields its send_all for the same reason).
            with trio.CancelScope(shield=True):
                await self._send(RawData(data=data[sent:]))
        else:
            await self._send(RawData(data=data))

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
