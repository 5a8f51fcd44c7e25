"""A real server for tests: the app under Hypercorn on loopback, in its own thread.

The server runs its own ``trio.run`` in a background thread, so tests of any kind
(sync tests with the sync openai client, trio tests with AsyncOpenAI, session-scoped
fixtures) can talk to it over real HTTP. ``call`` runs a function on the server's Trio
thread, for reading engine or registry state without racing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from trio_responses import Settings
from trio_responses.engine.base import Engine
from trio_responses.server import serve_app
from trio_responses.store.base import ResponseStore
from trio_responses.web.app import AppState, app_state, create_app

T = TypeVar("T")


class ServerThread:
    def __init__(self, settings: Settings, *, engine: Engine | None = None,
                 store: ResponseStore | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.base_url = ""
        self.app = create_app(settings, engine=engine, store=store)
        self.app_state: AppState = app_state(self.app)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="test-server", daemon=True)

    def start(self, timeout: float = 600) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the test server did not start")
        if self._error is not None:
            raise RuntimeError("the test server failed to start") from self._error
        return self

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(lambda task_status: serve_app(
                self.app, self.settings, shutdown_trigger=self._stop.wait,  # type: ignore[union-attr]
                task_status=task_status))
            self.base_url = binds[0].replace("0.0.0.0", "127.0.0.1")
            self._ready.set()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's Trio thread and return its result."""
        assert self._token is not None
        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def stop(self, timeout: float = 60) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the test server did not stop")

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
