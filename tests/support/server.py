"""A real server for tests: the app under Hypercorn on loopback, in its own thread.

The server runs its own ``trio.run`` in a background thread, so tests of any kind
(sync tests with the sync openai client, trio tests with AsyncOpenAI, session-scoped
fixtures) can talk to it over real HTTP. ``call`` runs a function on the server's Trio
thread, for reading engine or registry state without racing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from tests.support.trio_thread import TrioThread
from trio_responses import Settings
from trio_responses.engine.base import Engine
from trio_responses.server import serve_app
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
