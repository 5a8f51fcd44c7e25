"""One real engine per test session, living in its own Trio run on a background thread.

pytest-trio gives every test its own ``trio.run``, and has no session-scoped async
fixtures, but a :class:`VLLMEngine` belongs to the Trio run that started it. So
:class:`EngineLoop` starts a thread that runs ``trio.run``, builds and starts the engine
there, and keeps that run alive until the session ends. Tests reach it with:

- ``loop.run(async_fn, *args)`` or ``loop.call(fn, *args)`` from a plain (sync) test or
  any non-Trio thread (see :class:`tests.support.trio_thread.TrioThread`);
- ``await loop.arun(async_fn, *args)`` from a Trio test (a worker thread hops over);
- ``loop.proxy()``: an object with the Engine protocol whose calls hop to the engine's
  run, for a server running in another Trio run (``ServerThread(engine=loop.proxy())``).
  Its ``start``/``aclose`` do not start or stop the shared engine.

The ``real_engine`` fixture below is the session's :class:`EngineLoop` over the default
model (eager, ``max_model_len`` 2048, engine core in-thread for a ~10 s start and one
OpenMP thread, unless ``VLLM_ENABLE_V1_MULTIPROCESSING`` / ``OMP_NUM_THREADS`` are set).
Import it into a conftest to use it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest
import trio

from tests.support.trio_thread import TrioThread
from trio_responses.engine.base import (
    Engine,
    EngineDelta,
    EngineRequest,
    EngineStatistics,
    EngineStream,
)

T = TypeVar("T")

REAL_ENGINE_FLAGS = ("--enforce-eager", "--max-model-len", "2048", "--seed", "0")


class EngineLoop(TrioThread):
    what = "the engine loop"

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        super().__init__()
        self._make_engine = make_engine
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the engine loop is not started"
        return self._engine

    def close(self, timeout: float = 120) -> None:
        self.stop(timeout)
        if self.error is not None:
            raise RuntimeError("the engine loop failed") from self.error

    async def body(self, started: Callable[[], None], stop: trio.Event) -> None:
        engine = await trio.to_thread.run_sync(self._make_engine)
        try:
            await engine.start()
            self._engine = engine
            started()
            await stop.wait()
        finally:
            with trio.CancelScope(shield=True):
                await engine.aclose()

    async def arun(
        self, async_fn: Callable[..., Awaitable[T]], *args: Any, abandon_on_cancel: bool = False
    ) -> T:
        """:meth:`run` from another Trio run."""
        return await trio.to_thread.run_sync(
            lambda: self.run(async_fn, *args), abandon_on_cancel=abandon_on_cancel
        )

    def proxy(self) -> ProxyEngine:
        return ProxyEngine(self)


class ProxyEngine:
    """The shared engine, seen from another Trio run; start/aclose leave it running."""

    def __init__(self, loop: EngineLoop) -> None:
        self._loop = loop

    @property
    def model_name(self) -> str:
        return self._loop.engine.model_name

    @property
    def parses_tool_calls(self) -> bool:
        return self._loop.engine.parses_tool_calls

    @property
    def renders_tools(self) -> bool:
        return self._loop.engine.renders_tools

    @property
    def max_model_len(self) -> int:
        return self._loop.engine.max_model_len

    @property
    def sampling_defaults(self) -> Mapping[str, float]:
        return self._loop.engine.sampling_defaults

    async def start(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    async def submit(self, request: EngineRequest) -> EngineStream:
        stream = await self._loop.arun(self._loop.engine.submit, request)
        return ProxyStream(self._loop, stream)

    async def count_tokens(self, request: EngineRequest) -> int:
        return await self._loop.arun(self._loop.engine.count_tokens, request)

    def statistics(self) -> EngineStatistics:
        # Called on the caller's Trio thread, which must not block on another run: read
        # the engine's counters directly (plain attribute reads, whole under the GIL).
        return self._loop.engine.statistics()


class ProxyStream:
    def __init__(self, loop: EngineLoop, stream: EngineStream) -> None:
        self._loop = loop
        self._stream = stream
        self._iterator = stream.__aiter__()

    def __aiter__(self) -> ProxyStream:
        return self

    async def __anext__(self) -> EngineDelta:
        # Abandoned on cancel: the caller then closes the stream, which aborts it.
        return await self._loop.arun(self._iterator.__anext__, abandon_on_cancel=True)

    async def aclose(self) -> None:
        await self._loop.arun(self._stream.aclose)


def _make_default_engine() -> Engine:
    from trio_responses.engine.vllm.args import build_vllm_engine

    return build_vllm_engine(None, REAL_ENGINE_FLAGS)


@pytest.fixture(scope="session")
def real_engine() -> Iterator[EngineLoop]:
    """The session's real engine (vLLM on the CPU, default model), started once."""
    pytest.importorskip("vllm")
    # In-thread engine core: ~10 s to start instead of ~40 s, same outputs.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # One OpenMP thread: in-thread, torch's spinning OpenMP workers share the 2 cores with
    # this process's Trio threads (and anything else running); measured here under load,
    # 64 tokens took 5-6 s with one thread and 17-53 s with two.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    loop = EngineLoop(_make_default_engine).start()
    try:
        yield loop
    finally:
        loop.close()
