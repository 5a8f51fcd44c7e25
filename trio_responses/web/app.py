"""The Quart-Trio application: ``create_app`` and the ASGI middleware around it.

``create_app`` wires settings, engine and store into an :class:`~.state.AppState` and an
app whose routes (``web/routes.py``, ``web/conversation_routes.py``) reach that state.
Serving starts the state's lifetime task in Quart-Trio's app nursery, and stopping drains
it (``web/state.py``).
``python -m trio_responses`` drains before Hypercorn starts closing connections, so open
streams end with their terminal event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import trio
from hypercorn.logging import Logger
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.statsd import StatsdLogger
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPResponseStartEvent,
    Scope,
)
from quart_trio import QuartTrio

from ..config import Settings
from ..engine.base import Engine
from ..protocol.ids import IdFactory, random_id
from ..store.base import ResponseStore
from .app_inbox import AppInbox
from .connection import OneTaskConnection
from .conversation_routes import register_conversation_routes
from .routes import register_routes
from .state import AppState, build_engine, build_store
from .websocket import SocketConnection

# Bounds the shielded last send below (it only writes a few bytes and resets state).
LAST_SEND_TIMEOUT = 10.0
# Seconds a client has to send a whole request body before a 408: Quart's own default,
# spelled out; --max-request-body-bytes (16 MiB) takes ~2.2 Mbit/s to arrive in time.
BODY_TIMEOUT = 60
# Quart-Trio cancels its app nursery, which holds the state's lifetime task, this long
# past --shutdown-grace-seconds: the drain gets its grace, then the engine and the store
# close (the vLLM bridge waits up to 30 s for its thread).
APP_NURSERY_SHUTDOWN_MARGIN = 30.0


ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Coroutine[Any, Any, None]]


def shield_last_send(asgi_app: ASGIApp) -> ASGIApp:
    """ASGI middleware: send each HTTP response's last message in a shielded scope.

    Hypercorn (trio worker) re-arms a keep-alive connection's idle timer from inside
    the app's last ``send``, with ``nursery.start``; by then it has told the app the
    request is over, and Quart-Trio answers that by cancelling the request's nursery,
    so the new timer task starts in a cancelled scope and dies at once. The connection
    then never times out while idle (a client can hold it forever) and is not closed
    on shutdown (Hypercorn waits its whole graceful_timeout for it). Shielded, the
    timer starts where it belongs.
    """

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await asgi_app(scope, receive, send)
            return
        # On web/tcp_server.py's connections (Hypercorn as that module knows it).
        ours = isinstance(getattr(receive, "__self__", None), AppInbox)
        await asgi_app(scope, receive, GuardedSend(send, forget_headers=ours))

    return app


class GuardedSend:
    """An ASGI ``send`` whose last HTTP response message is shielded (see
    :func:`shield_last_send`); ``inner`` is the server's own ``send``, which
    ``web/sse_send.py`` looks behind for the connection.

    ``forget_headers``: Hypercorn keeps the request's scope and the response's start
    message until the response ends, for its access log; where none is configured
    (ours: ``server.py``), their headers are let go of once the response has started,
    for a stream that may last minutes (~1-2 KiB each with a client's usual headers).
    """

    __slots__ = ("_forget_headers", "inner")

    def __init__(self, inner: ASGISendCallable, *, forget_headers: bool = False) -> None:
        self.inner = inner
        self._forget_headers = forget_headers

    async def __call__(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            with trio.move_on_after(LAST_SEND_TIMEOUT, shield=True):
                await self.inner(message)
        else:
            await self.inner(message)
            if self._forget_headers and message["type"] == "http.response.start":
                forget_logged_headers(self.inner, message)


def forget_logged_headers(send: ASGISendCallable, start: HTTPResponseStartEvent) -> None:
    """The headers of ``start`` (just sent) and of its request, which the Hypercorn
    stream behind ``send`` keeps for its access log only, let go of if it writes none."""
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, HTTPStream):
        return
    log = stream.config.log
    if type(log) not in (Logger, StatsdLogger) or log.access_logger is not None:
        return  # a logger that may read them (statsd's reads the status only)
    start["headers"] = []
    stream.scope["headers"] = []


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    store: ResponseStore | None = None,
    ids: IdFactory = random_id,
    clock: Callable[[], float] = time.time,
) -> QuartTrio:
    """The ASGI app. ``engine``/``store`` default to what ``settings`` names."""
    settings = settings or Settings.from_env()
    state = AppState(settings, engine or build_engine(settings), store or build_store(settings),
                     ids, clock)
    app = QuartTrio("trio_responses")
    # A request is served in one task (web/connection.py), and SSE bodies go to the
    # socket on a short path of their own (web/sse_send.py).
    app.asgi_http_class = OneTaskConnection
    # And WebSocket events as pre-built frames (web/ws_send.py, web/websocket.py).
    app.asgi_websocket_class = SocketConnection
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_body_bytes or None
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = BODY_TIMEOUT
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = (settings.shutdown_grace_seconds
                                                      + APP_NURSERY_SHUTDOWN_MARGIN)
    app.extensions["trio_responses"] = state

    @app.before_serving
    async def _start() -> None:
        await app.nursery.start(state.lifetime)

    @app.after_serving
    async def _stop() -> None:
        await state.drain()

    register_routes(app, state)
    register_conversation_routes(app, state)
    app.asgi_app = shield_last_send(app.asgi_app)  # type: ignore[method-assign,assignment]
    return app


def app_state(app: QuartTrio) -> AppState:
    state: AppState = app.extensions["trio_responses"]
    return state
