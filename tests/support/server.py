"""A real server for tests: the app under Hypercorn on loopback, in its own thread.

The server runs its own ``trio.run`` in a background thread, so tests of any kind
(sync tests with the sync openai client, trio tests with AsyncOpenAI, session-scoped
fixtures) can talk to it over real HTTP. ``call`` runs a function on the server's Trio
thread, for reading engine or registry state without racing it.

:func:`serve_scripted` is the test server most tests use: the scripted engine, a SQLite
store of its own, no heartbeats, a short shutdown grace, any other settings given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.support.trio_thread import TrioThread
from trio_responses import Settings
from trio_responses.engine.base import Engine
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.server import serve_app
from trio_responses.store import SQLiteStore
from trio_responses.store.base import ResponseStore
from trio_responses.web.app import app_state, create_app
from trio_responses.web.state import AppState


class ServerThread(TrioThread):
    what = "the test server"

    def __init__(self, settings: Settings, *, engine: Engine | None = None,
                 store: ResponseStore | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.engine = engine
        self.store = store
        self.base_url = ""
        self.app = create_app(settings, engine=engine, store=store)
        self.app_state: AppState = app_state(self.app)

    async def body(self, started: Callable[[], None], stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(lambda task_status: serve_app(
                self.app, self.settings, shutdown_trigger=stop.wait,
                task_status=task_status))
            self.base_url = binds[0].replace("0.0.0.0", "127.0.0.1")
            started()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# The settings every scripted test server starts from.
TEST_SETTINGS: dict[str, Any] = {"engine": "scripted", "port": 0,
                                 "responses_ping_interval_seconds": 0,
                                 "shutdown_grace_seconds": 2}


def serve_scripted(tmp_path_factory: pytest.TempPathFactory,
                   engine: ScriptedEngine | None = None, **settings: Any) -> ServerThread:
    """A server (started by ``with``) for ``engine`` (default: the scripted model with
    no delay), with its own store, and ``settings`` over :data:`TEST_SETTINGS`."""
    if engine is None:
        engine = ScriptedEngine(model_name="scripted")
    path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    return ServerThread(Settings(**{**TEST_SETTINGS, **settings}), engine=engine,
                        store=SQLiteStore(path))


def engine_of(server: ServerThread) -> ScriptedEngine:
    assert isinstance(server.engine, ScriptedEngine)
    return server.engine


def run_ended(server: ServerThread, response_id: str) -> bool:
    """Whether the response's run is over: out of the registry, its engine request
    closed and its final state saved (the last thing a run does is leave)."""
    registry = server.app_state.service.registry
    return server.call(lambda: registry.get(response_id) is None)
