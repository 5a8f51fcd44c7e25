"""Hypercorn's per-connection server (trio worker), holding less while a connection waits.

An idle SSE stream (the engine stalled, a ping now and then) is mostly objects that wait:
Hypercorn's for its connection, ours for its run. Hypercorn's ``TCPServer`` keeps, per
connection, for as long as the connection lives (``server_overhead.py --parts idle
--census``, benchmarks/README.md):

- a ``trio.fail_after(read_timeout or inf)`` scope around every read, also when there is
  no read timeout (the default, and ours: a stream's client sends nothing for minutes);
- the read itself through ``SocketStream.receive_some``: five coroutine frames and a
  context manager between the read loop and the wait for the socket;
- per request, a memory channel for the ASGI ``receive``, which the app's one task
  (web/connection.py) stops using as soon as it starts, yet whose ends the frames of
  Hypercorn's and Quart's ``receive`` arguments keep alive for the whole response;
- a lock in the keep-alive timer's ``TrioSingleTask``;
- a ``fail_after(ssl_handshake_timeout)`` scope entered for every connection, TLS or not
  (a plain one finds out from an AttributeError), whose deadline keeps the scope in
  Trio's deadline heap for the timeout's 60 s.

:class:`LeanTCPServer` is Hypercorn 0.18's ``TCPServer`` with those changed, and nothing
else: with no read timeout, a read on a plain TCP socket is one non-blocking ``recv()``
and, when nothing is there, ``trio.lowlevel.wait_readable`` on the socket (what
``receive_some`` does, with the same checkpoints, and the errors of a broken or closed
connection ending the loop as they did); with a read timeout the reads are Hypercorn's
own, over TLS its own without the infinite scope. An HTTP request's ``receive`` is an
:class:`AppInbox`: Hypercorn's channel until the app takes the messages over
(:meth:`AppInbox.take_over`), then nothing but a function; WebSocket scopes keep
Hypercorn's channel. The keep-alive timer is started with ``start_soon`` in a cancel
scope made beforehand, so restarting it needs no lock (nor an await), and the new timer
runs in the connection's nursery from the start (``nursery.start`` ran it in the
restarting task's scopes until it started: see web/app.py's ``shield_last_send``). The
handshake's scope is entered for TLS connections only.

It is installed by our serve paths (web/tcp_install.py: ``serve_app``, and the first call
of ``trio_responses:app`` under ``hypercorn -k trio``) as the ``TCPServer`` Hypercorn's
trio worker builds each connection with, only where Hypercorn is the version it was
written for; any other version keeps its own.
"""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.trio.task_group import TaskGroup, _handle
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    AppWrapper,
    ASGIReceiveEvent,
    ASGISendEvent,
    ConnectionState,
    LifespanState,
    Scope,
)
from hypercorn.utils import parse_socket_addr

from .app_inbox import AppInbox


class LeanTaskGroup(TaskGroup):
    """Hypercorn's task group, whose HTTP apps receive through an :class:`AppInbox`."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        if scope["type"] != "http":
            return await super().spawn_app(app, config, scope, send)
        inbox = AppInbox(config.max_app_queue_size)
        assert self._nursery is not None
        self._nursery.start_soon(_handle, app, config, scope, inbox.receive, send,
                                 trio.to_thread.run_sync, trio.from_thread.run)
        return inbox.put


async def _timer(scope: trio.CancelScope, action: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await action()


class KeepAliveTimer:
    """Hypercorn's ``TrioSingleTask`` (one task at a time, restarted or stopped) without
    its lock: the task is started with ``start_soon`` in a scope made here, so a restart
    cancels the old one and starts the new one with no await in between."""

    __slots__ = ("_scope",)

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None

    async def restart(self, task_group: TaskGroup, action: Callable[[], Awaitable[None]]
                      ) -> None:
        self.stop_now()
        self._scope = trio.CancelScope()
        assert task_group._nursery is not None
        task_group._nursery.start_soon(_timer, self._scope, action)

    async def stop(self) -> None:
        self.stop_now()

    def stop_now(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None


class LeanTCPServer(TCPServer):
    """Hypercorn 0.18's ``TCPServer``, holding less per connection (module docstring)."""

    def __init__(self, app: AppWrapper, config: Config, context: WorkerContext,
                 state: LifespanState, stream: trio.SSLStream[trio.SocketStream]) -> None:
        super().__init__(app, config, context, state, stream)
        self.idle_task = KeepAliveTimer()  # type: ignore[assignment]  # its interface

    async def run(self) -> None:
        """Hypercorn's, with a :class:`LeanTaskGroup`, and the TLS handshake's timeout
        scope only for TLS: Hypercorn enters it for every connection and finds out from
        an AttributeError that there is no handshake; the scope's deadline then stays in
        Trio's deadline heap, holding the scope, for ``ssl_handshake_timeout`` (60 s)."""
        if isinstance(self.stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                return  # Handshake failed
            alpn_protocol = self.stream.selected_alpn_protocol()
            socket = self.stream.transport_stream.socket
            ssl = True
        else:
            alpn_protocol = "http/1.1"
            socket = cast(trio.SocketStream, self.stream).socket
            ssl = False

        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())

            async with LeanTaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    ssl,
                    client,
                    server,
                    self.protocol_send,
                    alpn_protocol,
                )
                await self.protocol.initiate()
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()

    async def _read_data(self) -> None:
        if self.config.read_timeout:
            await super()._read_data()  # each read under its timeout, as Hypercorn does
            return
        stream: Any = self.stream
        # The socket module's socket under Trio's (a private attribute: the install checks
        # Hypercorn's version, not Trio's, so a Trio without it reads as Hypercorn does).
        sock = getattr(getattr(stream, "socket", None), "_sock", None) \
            if isinstance(stream, trio.SocketStream) else None
        if not isinstance(sock, stdlib_socket.socket):
            await self._read_stream()
            return
        while True:
            # receive_some's checkpoints: cancellable before the read; a schedule point
            # after one that did not have to wait.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data: bytes | None = sock.recv(MAX_RECV)
            except BlockingIOError:
                data = None
            except OSError:
                break  # closed or broken: receive_some's errors, which end the loop too
            if data is None:
                try:
                    while data is None:
                        await trio.lowlevel.wait_readable(sock)
                        try:
                            data = sock.recv(MAX_RECV)
                        except BlockingIOError:
                            pass
                except (trio.ClosedResourceError, OSError):
                    break  # closed by Hypercorn meanwhile, or broken
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
            await self.protocol.handle(RawData(data=data))
            if data == b"":
                break
        await self.protocol.handle(Closed())

    async def _read_stream(self) -> None:
        """Hypercorn's read loop (over TLS), without the infinite timeout scope."""
        while True:
            try:
                data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            await self.protocol.handle(RawData(data=bytes(data)))
            if data == b"":
                break
        await self.protocol.handle(Closed())
