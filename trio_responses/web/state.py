"""The app's state: what the routes reach, and its lifetime from start-up to drain.

:class:`AppState` is built by ``create_app`` (``web/app.py``) from settings, an engine and
a store, and handed to the routes (``web/routes.py``); it lives in a module of its own so
that both import it and neither imports the other. Its :meth:`AppState.lifetime` task
opens the store (marking responses a dead process left running as failed) and the engine,
then opens the registry whose nursery every response runs in, and waits;
:meth:`AppState.drain` stops it: no new responses, live ones get the grace period, the
rest end with a terminal event; then the engine and the store close.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable

import trio

from ..config import Settings
from ..engine.base import Engine
from ..protocol.ids import IdFactory
from ..runtime.ratelimit import RateLimiter
from ..runtime.registry import Registry
from ..runtime.retention import retention_policy, sweep_forever
from ..runtime.sealing import load_sealer
from ..runtime.service import ResponseService
from ..runtime.service_config import ServiceConfig
from ..runtime.shared import answer_tool_outputs
from ..store.base import ResponseStore, SharedStore
from .gateway import KeyRing
from .metrics import Metrics

log = logging.getLogger("trio_responses")


def build_engine(settings: Settings) -> Engine:
    if settings.engine == "scripted":
        from ..engine.scripted import ScriptedEngine

        return ScriptedEngine.from_flags(settings.vllm_args,
                                         cache_dir=settings.cache_folder(),
                                         token_delay=settings.scripted_token_delay_seconds,
                                         step_pacing=settings.scripted_pacing == "step",
                                         model_name=settings.model or "scripted")
    from ..engine.vllm.args import build_vllm_engine

    return build_vllm_engine(settings.model, settings.vllm_args,
                             cache_dir=settings.cache_folder())


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
    """PostgreSQL with ``--store-url`` (replicas share it), else the SQLite file."""
    if settings.store_url:
        from ..store.postgres import PostgresStore

        return PostgresStore(settings.store_url, pool_size=settings.store_pool_size,
                             lease_seconds=settings.store_lease_seconds)
    from ..store import SQLiteStore

    return SQLiteStore(settings.store_file(),
                       read_connections=settings.store_read_connections)


def _control(registry: Registry, store: SharedStore, kind: str, response_id: str,
             call_id: int) -> None:
    """A control message from another replica (store.base.SharedStore): act if the
    response runs here (every replica hears it)."""
    run = registry.get(response_id)
    if run is None:
        return
    if kind == "cancel" and run.cancellable:
        run.end("cancel")
    elif kind == "tool_outputs" and call_id:
        registry.spawn(answer_tool_outputs, store, run, call_id,
                       name=f"tool outputs for {response_id}")


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
            sealer = await trio.to_thread.run_sync(functools.partial(
                load_sealer, self.settings.sealing_key_path(),
                create=not self.settings.sealing_key_file))
            await self.engine.start()
            freeze_startup_heap()
            if self.keys.open:
                log.warning("no API key configured (--api-key): the server is open to anyone "
                            "who can reach it")
            async with trio.open_nursery() as background, Registry.open() as registry:
                self._service = ResponseService(
                    config=ServiceConfig.from_settings(self.settings, KeyRing.owner_of),
                    engine=self.engine,
                    store=self.store, registry=registry, ids=self.ids, clock=self.clock,
                    limiter=self.limiter, observer=self.metrics.observe, sealer=sealer)
                self.metrics.bind(lambda: registry, self.engine)
                if isinstance(self.store, SharedStore):
                    store = self.store
                    self.store.on_control(lambda kind, response_id, call_id: _control(
                        registry, store, kind, response_id, call_id))
                background.start_soon(sweep_forever, self.store,
                                      retention_policy(self.settings), self.clock,
                                      name="retention sweep")
                task_status.started()
                await self._stop.wait()
                await registry.drain(self.settings.shutdown_grace_seconds)
                background.cancel_scope.cancel()
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
