"""The Quart-Trio application and its lifetime.

``create_app`` wires settings, engine and store into an app. Serving starts one
lifetime task in Quart-Trio's app nursery: it opens the store (marking responses a
dead process left running as failed) and the engine, then opens the registry whose
nursery every response runs in, and waits. Stopping is a drain (:meth:`AppState.drain`):
no new responses, live ones get the grace period, the rest end with a terminal event;
then the engine and the store close. ``python -m trio_responses`` drains before
Hypercorn starts closing connections, so open streams end with their terminal event.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart_trio import QuartTrio

from ..config import Settings
from ..engine.base import Engine
from ..protocol.ids import IdFactory, random_id
from ..runtime.ratelimit import RateLimiter
from ..runtime.registry import Registry
from ..runtime.service import ResponseService
from ..runtime.service_config import ServiceConfig
from ..store.base import ResponseStore
from .gateway import KeyRing
from .metrics import Metrics

log = logging.getLogger("trio_responses")


def build_engine(settings: Settings) -> Engine:
    if settings.engine == "scripted":
        from ..engine.scripted import ScriptedEngine

        return ScriptedEngine.from_flags(settings.vllm_args,
                                         token_delay=settings.scripted_token_delay,
                                         model_name=settings.model or "scripted")
    from ..engine.vllm_bridge import build_vllm_engine

    return build_vllm_engine(settings.model, settings.vllm_args)


def freeze_startup_heap() -> None:
    """Take everything alive after start-up out of the garbage collector's reach.

    With vLLM in the process that is ~630,000 objects (the engine client, the tokenizers,
    torch and transformers modules); a full collection walks them all in ~0.4 s, during
    which no stream moves, and Python runs one whenever enough new objects have survived.
    Frozen, they are never walked again (vLLM's engine core does the same). Objects made
    later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def build_store(settings: Settings) -> ResponseStore:
    from ..store import SQLiteStore, default_store_path

    return SQLiteStore(settings.store_path or default_store_path())


class AppState:
    """Everything the routes reach: built at start-up, gone at shutdown."""

    def __init__(self, settings: Settings, engine: Engine, store: ResponseStore,
                 ids: IdFactory, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.ids = ids
        self.clock = clock
        self.keys = KeyRing(settings.api_keys)
        self.started_at = int(clock())
        self.metrics = Metrics()
        self.limiter = RateLimiter(
            requests_per_minute=settings.rate_limit_requests_per_minute,
            tokens_per_minute=settings.rate_limit_tokens_per_minute,
            clock=trio.current_time)
        self._service: ResponseService | None = None
        self._stop = trio.Event()
        self._stopped = trio.Event()

    @property
    def service(self) -> ResponseService:
        if self._service is None:
            from ..errors import EngineUnavailable

            raise EngineUnavailable("The server is not ready.")
        return self._service

    @property
    def ready(self) -> bool:
        return self._service is not None and not self._stop.is_set()

    async def lifetime(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        try:
            failed = await self.store.open()
            if failed:
                log.warning("marked %d responses left running by a previous process as failed",
                            failed)
            await self.engine.start()
            freeze_startup_heap()
            if self.keys.open:
                log.warning("no API key configured (--api-key): the server is open to anyone "
                            "who can reach it")
            async with Registry.open() as registry:
                self._service = ResponseService(
                    config=ServiceConfig.from_settings(self.settings), engine=self.engine,
                    store=self.store, registry=registry, ids=self.ids, clock=self.clock,
                    limiter=self.limiter, observer=self.metrics.observe)
                self.metrics.bind(lambda: registry, self.engine)
                task_status.started()
                await self._stop.wait()
                await registry.drain(self.settings.shutdown_grace_seconds)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.engine.aclose()
                finally:
                    await self.store.aclose()
                    self._stopped.set()

    async def drain(self) -> None:
        """Stop serving responses: drain the registry, close engine and store."""
        self._stop.set()
        await self._stopped.wait()


# Bounds the shielded last send below (it only writes a few bytes and resets state).
LAST_SEND_TIMEOUT = 10.0


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

        async def guarded_send(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.move_on_after(LAST_SEND_TIMEOUT, shield=True):
                    await send(message)
            else:
                await send(message)

        await asgi_app(scope, receive, guarded_send)

    return app


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    store: ResponseStore | None = None,
    ids: IdFactory = random_id,
    clock: Callable[[], float] = time.time,
) -> QuartTrio:
    """The ASGI app. ``engine``/``store`` default to what ``settings`` names."""
    from .routes import register_routes

    settings = settings or Settings.from_env()
    state = AppState(settings, engine or build_engine(settings), store or build_store(settings),
                     ids, clock)
    app = QuartTrio("trio_responses")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_body_bytes or None
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 60
    # The app nursery holds our lifetime task: give the drain time before Quart cancels.
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.shutdown_grace_seconds + 30
    app.extensions["trio_responses"] = state

    @app.before_serving
    async def _start() -> None:
        await app.nursery.start(state.lifetime)

    @app.after_serving
    async def _stop() -> None:
        await state.drain()

    register_routes(app, state)
    app.asgi_app = shield_last_send(app.asgi_app)  # type: ignore[method-assign,assignment]
    return app


def app_state(app: QuartTrio) -> AppState:
    state: AppState = app.extensions["trio_responses"]
    return state
