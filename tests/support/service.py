"""An in-process ResponseService over the scripted engine, for runtime tests (no HTTP;
with an in-memory store it is safe under MockClock's autojump)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from trio_responses.config import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.protocol.ids import counting_ids
from trio_responses.runtime.registry import Registry
from trio_responses.runtime.service import ResponseService
from trio_responses.runtime.service_config import ServiceConfig
from trio_responses.store.base import ResponseStore


@asynccontextmanager
async def open_service(
    store: ResponseStore, *, token_delay: float = 0.0, **settings: Any
) -> AsyncIterator[tuple[ResponseService, ScriptedEngine]]:
    engine = ScriptedEngine(token_delay=token_delay)
    await engine.start()
    await store.open()
    try:
        async with Registry.open() as registry:
            service = ResponseService(
                config=ServiceConfig.from_settings(Settings(**{
                    "engine": "scripted", "responses_ping_interval_seconds": 0, **settings})),
                engine=engine, store=store, registry=registry, ids=counting_ids(),
                clock=lambda: 1700000000.0)
            yield service, engine
    finally:
        await store.aclose()
