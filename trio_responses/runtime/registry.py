"""The registry of live responses, and the app-lifetime nursery they run in.

HTTP handlers come and go (Quart streams a body after its route returned), so no run
lives in a handler's nursery: every run starts here and is found here by id, by the
SSE writer that follows it, ``/cancel``, ``GET``, and shutdown.

It also runs the one task that sends every run's heartbeats (runtime/heartbeat.py).

Shutdown is a drain: stop taking new runs, give live ones ``grace`` seconds to finish,
then end the rest (cause ``shutdown``), which sends each its terminal event.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import EngineUnavailable
from .heartbeat import Heartbeats
from .run import ResponseRun


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    live: int
    background: int
    accepting: bool


def _start_soon(nursery: trio.Nursery, task: Callable[..., Awaitable[None]], *args: Any,
                name: str) -> None:
    """``nursery.start_soon``, in a context of its own. A task copies the context
    variables of the code that starts it: started from a request handler, a run would
    hold Quart's request context (the request, its headers, its body: ~2 KiB) as long as
    it streams, though it uses nothing of it."""
    contextvars.Context().run(nursery.start_soon, task, *args, name=name)


class Registry:
    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._runs: dict[str, ResponseRun] = {}
        self.accepting = True
        self.heartbeats = Heartbeats()
        nursery.start_soon(self.heartbeats.serve, name="heartbeats")

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[Registry]:
        async with trio.open_nursery() as nursery:
            registry = cls(nursery)
            try:
                yield registry
            finally:
                with trio.CancelScope(shield=True):
                    await registry.drain(0)
                nursery.cancel_scope.cancel()

    def start(self, run: ResponseRun, *, on_exit: Callable[[], None] | None = None) -> None:
        """Run ``run`` here; ``on_exit`` is called when it has left, however it ended."""
        if not self.accepting:
            raise EngineUnavailable("The server is shutting down.")
        self._runs[run.id] = run
        _start_soon(self._nursery, self._run, run, on_exit, name=f"response {run.id}")

    async def _run(self, run: ResponseRun, on_exit: Callable[[], None] | None) -> None:
        try:
            await run.run()
        finally:
            self._runs.pop(run.id, None)
            if on_exit is not None:
                on_exit()

    def spawn(self, task: Callable[..., Awaitable[None]], *args: Any, name: str) -> None:
        """Run a helper task of a run (it must end by itself when the run does)."""
        _start_soon(self._nursery, task, *args, name=name)

    def get(self, response_id: str) -> ResponseRun | None:
        return self._runs.get(response_id)

    def live(self) -> list[ResponseRun]:
        return list(self._runs.values())

    async def drain(self, grace: float) -> None:
        """Stop accepting; wait up to ``grace`` s for live runs; end the rest."""
        self.accepting = False
        with trio.move_on_after(grace):
            for run in self.live():
                await run.done.wait()
        for run in self.live():
            run.end("shutdown")
        for run in self.live():
            await run.done.wait()

    def statistics(self) -> RegistryStatistics:
        runs = self.live()
        return RegistryStatistics(
            live=len(runs),
            background=sum(1 for run in runs if run.background),
            accepting=self.accepting,
        )
