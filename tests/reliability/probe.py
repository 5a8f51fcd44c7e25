"""``python -m tests.reliability.probe [flags]``: the server, instrumented for measuring.

It is ``python -m trio_responses`` (same flags, same app, same ``serve_app`` with its
SIGTERM drain; ``--engine scripted`` or the real vLLM engine) with two additions a test
in another process needs:

- the engine is wrapped to record, with ``time.time()``, when each request was submitted
  and when it was aborted (an ``abort`` that aborted, or an ``aclose`` that raised the
  engine's abort count), so
  disconnect → engine-abort latency is measured end to end;
- ``GET /_probe`` returns the engine's and the registry's figures, the abort times, the
  number of Trio tasks and the threads (idle Trio worker threads counted apart: they are
  a cache that empties itself after 10 s). ``?gc=1`` runs the garbage collector first;
  ``?names=1`` adds the distinct task names.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import trio
from quart import Response, request

from trio_responses.config import Settings
from trio_responses.engine.base import (
    Engine,
    EngineDelta,
    EngineRequest,
    EngineStatistics,
    EngineStream,
)
from trio_responses.server import serve_app
from trio_responses.web.app import app_state, create_app
from trio_responses.web.routes import json_response
from trio_responses.web.state import build_engine


class TimedStream:
    def __init__(self, engine: TimedEngine, request_id: str, inner: EngineStream) -> None:
        self._engine = engine
        self._request_id = request_id
        self._inner = inner

    def __aiter__(self) -> AsyncIterator[EngineDelta]:
        return self._inner.__aiter__()

    def abort(self) -> bool:
        """The inner stream's synchronous abort, where it has one (see EngineStream)."""
        abort = getattr(self._inner, "abort", None)
        aborted = bool(abort()) if abort is not None else False
        if aborted:
            self._engine.aborted_at.setdefault(self._request_id, time.time())
        return aborted

    async def aclose(self) -> None:
        before = self._engine.statistics().aborted_total
        await self._inner.aclose()
        if self._engine.statistics().aborted_total > before:
            self._engine.aborted_at.setdefault(self._request_id, time.time())


class TimedEngine:
    """Any engine, with the submit and abort times of each request."""

    def __init__(self, inner: Engine) -> None:
        self._inner = inner
        self.submitted_at: dict[str, float] = {}
        self.aborted_at: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # what only this kind of engine has

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    @property
    def parses_tool_calls(self) -> bool:
        return self._inner.parses_tool_calls

    @property
    def renders_tools(self) -> bool:
        return self._inner.renders_tools

    @property
    def max_model_len(self) -> int:
        return self._inner.max_model_len

    @property
    def sampling_defaults(self) -> Mapping[str, float]:
        return self._inner.sampling_defaults

    async def start(self) -> None:
        await self._inner.start()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def submit(self, request: EngineRequest) -> EngineStream:
        stream = await self._inner.submit(request)
        self.submitted_at[request.request_id] = time.time()
        return TimedStream(self, request.request_id, stream)

    async def count_tokens(self, request: EngineRequest) -> int:
        return await self._inner.count_tokens(request)

    def statistics(self) -> EngineStatistics:
        return self._inner.statistics()


def task_names() -> list[str]:
    def walk(task: trio.lowlevel.Task) -> list[str]:
        names = [task.name]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names += walk(child)
        return names

    return walk(trio.lowlevel.current_root_task())


def main(argv: list[str]) -> None:
    settings = Settings.from_args(argv)
    engine = TimedEngine(build_engine(settings))
    app = create_app(settings, engine=engine)
    state = app_state(app)

    @app.get("/_probe")
    async def probe() -> Response:
        if request.args.get("gc"):
            gc.collect()
        registry = state.service.registry
        # This request's own connection cancelled its keep-alive timer when the request
        # came; served in one task (web/connection.py), the probe may run before that
        # task has had the scheduler pass it needs to exit: give it a few.
        for _ in range(3):
            await trio.lowlevel.checkpoint()
        names = task_names()
        threads = [t.name for t in threading.enumerate()]
        idle_workers = sum(1 for name in threads if name.startswith("Trio thread"))
        stats = engine.statistics()
        return json_response({
            "live": registry.statistics().live,
            "running": stats.running,
            "aborted_total": stats.aborted_total,
            "submitted": engine.submitted_at,
            "aborted": engine.aborted_at,
            "tasks": len(names),
            "task_names": sorted(set(names)) if request.args.get("names") else [],
            "threads": len(threads) - idle_workers,
            "idle_worker_threads": idle_workers,
        })

    trio.run(serve_app, app, settings)


if __name__ == "__main__":
    main(sys.argv[1:])
