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

While a transport's reader waits for frames, it need not wake for each one: the frames
a run appends then are taken by the transport's writer (the buffer's *sink*,
runtime/buffer.py) and queued, and one :class:`Flusher` task per Trio run sends, in its
next scheduler pass, what every connection queued, each connection's at once: per engine
step one task wake-up for all the streams instead of one per stream, and the sends back
to back. What a flush cannot send whole is left to the writer's reader, which is woken
for it and sends it through ``protocol_send`` before anything else.

Used by ``sse_send`` (HTTP/1.1 body chunks) and ``ws_send`` (WebSocket frames).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio
from hypercorn.events import Event, RawData

log = logging.getLogger(__name__)


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


class Flushable(Protocol):
    def flush(self) -> None:
        """Send what was queued now (what the socket does not take whole is left to the
        writer's reader, woken for it)."""

    def abandon(self) -> None:
        """``flush`` raised (a bug): drop what is left, so no reader waits for it."""


class Flusher:
    """Sends what the writers of waiting readers queued, in one task per Trio run (a
    system task, started when first needed; see the module docstring)."""

    _run_var: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("direct_send_flusher")

    def __init__(self) -> None:
        self._writers: list[Flushable] = []
        self._ready = trio.Event()

    @classmethod
    def of_run(cls) -> Flusher:
        try:
            return cls._run_var.get()
        except LookupError:
            flusher = cls()
            cls._run_var.set(flusher)
            trio.lowlevel.spawn_system_task(flusher._run, name="direct send flusher")
            return flusher

    def add(self, writer: Flushable) -> None:
        self._writers.append(writer)
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            writers, self._writers = self._writers, []
            for writer in writers:
                try:
                    writer.flush()
                except Exception:  # a bug: the reader must not wait for this forever
                    log.exception("a direct send failed")
                    writer.abandon()
