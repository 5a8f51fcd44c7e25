"""``python -m tests.reliability.probe [flags]``: the server, instrumented for measuring.

It is ``python -m trio_responses --engine scripted`` (same flags, same app, same
``serve_app`` with its SIGTERM drain) with two additions a test in another process needs:

- the scripted engine records, with ``time.time()``, when each request was submitted and
  when it was aborted (so disconnect → engine-abort latency is measured end to end);
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
from typing import Any

import trio
from quart import Response, request

from trio_responses.config import Settings
from trio_responses.engine.base import EngineRequest
from trio_responses.engine.scripted import ScriptedEngine, ScriptedStream
from trio_responses.server import serve_app
from trio_responses.web.app import app_state, create_app
from trio_responses.web.routes import json_response


class _TimedList(list[str]):
    """``ScriptedEngine.aborted`` that also remembers when each id was added."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, float] = {}

    def append(self, item: str) -> None:
        self.times.setdefault(item, time.time())
        super().append(item)


class ProbeEngine(ScriptedEngine):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aborted = _TimedList()
        self.submitted_at: dict[str, float] = {}

    async def submit(self, request: EngineRequest) -> ScriptedStream:
        stream = await super().submit(request)
        self.submitted_at[request.request_id] = time.time()
        return stream


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
    engine = ProbeEngine(token_delay=settings.scripted_token_delay,
                         model_name=settings.model or "scripted")
    app = create_app(settings, engine=engine)
    state = app_state(app)

    @app.get("/_probe")
    async def probe() -> Response:
        if request.args.get("gc"):
            gc.collect()
        registry = state.service.registry
        names = task_names()
        threads = [t.name for t in threading.enumerate()]
        idle_workers = sum(1 for name in threads if name.startswith("Trio thread"))
        return json_response({
            "live": registry.statistics().live,
            "running": engine.statistics().running,
            "submitted": engine.submitted_at,
            "aborted": engine.aborted.times,
            "tasks": len(names),
            "task_names": sorted(set(names)) if request.args.get("names") else [],
            "threads": len(threads) - idle_workers,
            "idle_worker_threads": idle_workers,
        })

    trio.run(serve_app, app, settings)


if __name__ == "__main__":
    main(sys.argv[1:])
