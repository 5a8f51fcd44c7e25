"""Serving: the app under Hypercorn on Trio, with a shutdown that drains first.

On SIGINT/SIGTERM (or the caller's ``shutdown_trigger``) the app is drained *before*
Hypercorn's own graceful shutdown starts closing connections, so every open stream
gets its terminal event; Hypercorn's timeouts are set so a long stream is never cut
(no read timeout, a grace period that covers the drain, a start-up timeout that covers
a slow engine start), and TCP_USER_TIMEOUT bounds a write to a peer that stopped
acknowledging (``--tcp-user-timeout-seconds``). Each connection is served by
web/tcp_server.py's ``LeanTCPServer`` where Hypercorn is the version it was written
for (``web/tcp_install.py``).
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config, Sockets
from quart_trio import QuartTrio

from .config import Settings
from .engine.base import Engine
from .store.base import ResponseStore
from .web.app import app_state, create_app
from .web.tcp_install import install_tcp_server

# Hypercorn's timeouts, in seconds. Serving drains the app (every response ends, within
# --shutdown-grace-seconds) before Hypercorn's own shutdown starts; these only have to
# never cut what the drain and the lifespan still do.
# Graceful period for open connections, past the grace: by then the drain is over, and
# this is slack for the last terminal events to be written and connections to close.
GRACEFUL_CLOSE_MARGIN = 5.0
# Lifespan start-up opens the store and starts the engine: vLLM loading a large model
# (downloaded first, on a cold cache) takes many minutes; Hypercorn's default is 60 s.
STARTUP_TIMEOUT = 3600.0
# Lifespan shutdown, past the grace: the engine's stop (the vLLM bridge waits up to 30 s
# for its thread) and the store's close (a WAL checkpoint) after the drain.
LIFESPAN_SHUTDOWN_MARGIN = 60.0


class ServerConfig(Config):
    """Hypercorn's config, plus TCP_USER_TIMEOUT on the listening sockets, which every
    accepted connection inherits (Linux). Hypercorn has no write timeout and shields its
    writes from cancellation: without this, a client that stops reading (a zero receive
    window) holds its connection as long as it likes, and a SIGTERM'd server waits for it
    past any grace period."""

    tcp_user_timeout = 0.0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if self.tcp_user_timeout > 0 and option is not None:
            for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, option,
                                    max(1, round(self.tcp_user_timeout * 1000)))
        return sockets


def hypercorn_config(settings: Settings) -> Config:
    config = ServerConfig()
    config.tcp_user_timeout = settings.tcp_user_timeout_seconds
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_grace_seconds + GRACEFUL_CLOSE_MARGIN
    config.startup_timeout = STARTUP_TIMEOUT
    config.shutdown_timeout = settings.shutdown_grace_seconds + LIFESPAN_SHUTDOWN_MARGIN
    config.read_timeout = None
    config.keep_alive_timeout = settings.keep_alive_timeout_seconds
    config.backlog = settings.backlog
    # A WebSocket's heartbeats are pings (its runs send none), at the SSE interval; a
    # client event is bounded like a request body.
    config.websocket_ping_interval = settings.responses_ping_interval_seconds or None
    if settings.max_request_body_bytes:
        config.websocket_max_message_size = settings.max_request_body_bytes
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = settings.log_level.upper()
    return config


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def serve(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    store: ResponseStore | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown_trigger`` returns (default: SIGINT or SIGTERM).

    ``task_status.started`` receives the bound addresses once the port is open, which
    is after the store was opened and the engine started.
    """
    settings = settings or Settings()
    app = create_app(settings, engine=engine, store=store)
    await serve_app(app, settings, shutdown_trigger=shutdown_trigger, task_status=task_status)


async def serve_app(
    app: QuartTrio,
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an app made by :func:`create_app` (see :func:`serve`)."""
    from hypercorn.trio import serve as hypercorn_serve

    install_tcp_server()
    state = app_state(app)
    trigger = shutdown_trigger or wait_for_signal

    async def drain_then_stop() -> None:
        await trigger()
        await state.drain()

    await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=drain_then_stop,
                          task_status=task_status)
