"""The vLLM engine bridge: the Engine protocol over vLLM's ``LLMEngine`` on its own thread.

One :class:`VLLMEngine` owns one engine and one thread (``vllm-engine``), whose body is
:class:`~trio_responses.engine.vllm.worker.EngineWorker`: only that thread touches the
engine; it steps it while anything is unfinished and posts each step's outputs to Trio
as one batch (one ``TrioToken.run_sync_soon`` call per step). This module is the Trio
side of that boundary.

- ``submit`` renders the prompt in a Trio worker thread (a tokenizer copy of our own, one
  render at a time: see :mod:`trio_responses.engine.vllm.prompt`), so
  ``ContextLengthExceeded`` is raised before anything reaches the engine, then puts an
  ``Add`` on the command queue and returns a :class:`VLLMStream`.
- :meth:`VLLMEngine._on_batch` merges each delta into its stream's pending delta and
  wakes the reader; while the reader waits with nothing pending, the delta is first
  offered to its listener (``engine.base.ListenedStream``: a run publishes a plain text
  delta there, and is not woken for it). A reader that lags gets fewer, larger deltas
  (text and logprobs concatenated, counts are totals) instead of a growing queue, and
  the engine thread never waits for Trio: one slow client cannot stall the others.
  Merging only collects the parts (:class:`_Merged`); the merged delta is built once,
  when it is read, so a Trio thread that falls behind at GPU rates pays one small append
  per step and stream.
- ``VLLMStream.aclose`` aborts with a ``SimpleQueue.put``, which never blocks; the engine
  thread applies it before its next step. With the engine core in its own process the
  abort is also sent to the core at once (``LoadedEngine.abort_soon``), so it lands
  during the step in flight, as vLLM's own server does. The stream ends locally at once: vLLM sends
  no final output for an aborted request, and a delta still in flight is dropped.
- A failure of the engine (``EngineDeadError``, or anything raised on its thread) marks
  the bridge unhealthy and fails every live stream with ``EngineError``; later submits
  raise ``EngineUnavailable``.
- ``aclose`` fails live streams, sends ``Stop`` (the thread aborts what is left and shuts
  the engine core down) and waits for it, bounded by ``stop_timeout``.

Every ``VLLMEngine`` method must be called from the Trio run that called ``start``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import trio

from trio_responses import errors
from trio_responses.engine.base import (
    DeltaListener,
    EngineDelta,
    EngineRequest,
    EngineStatistics,
)
from trio_responses.engine.reasoning import thinking_flag
from trio_responses.engine.vllm.worker import (
    Abort,
    Add,
    Batch,
    Callbacks,
    Command,
    EngineWorker,
    LoadedEngine,
    Stop,
)

log = logging.getLogger(__name__)


class _Merged:
    """Deltas waiting to be read as one: the newest (whose counts are totals, and so
    win) and the parts to join. Built into one delta only when read."""

    __slots__ = ("has_calls", "has_output", "last", "parts")

    def __init__(self, delta: EngineDelta) -> None:
        self.last = delta
        self.parts: list[EngineDelta] | None = None
        self.has_output = bool(delta.text or delta.tool_calls)
        self.has_calls = bool(delta.tool_calls)

    def accepts(self, then: EngineDelta) -> bool:
        """Whether ``then`` can join without reordering the output: a merged delta is
        read as reasoning, then text, then tool calls."""
        if then.reasoning and self.has_output:
            return False
        return not (then.text and self.has_calls)

    def add(self, delta: EngineDelta) -> None:
        if self.parts is None:
            self.parts = [self.last]
        self.parts.append(delta)
        self.last = delta
        self.has_output = self.has_output or bool(delta.text or delta.tool_calls)
        self.has_calls = self.has_calls or bool(delta.tool_calls)

    def delta(self) -> EngineDelta:
        parts = self.parts
        if parts is None:
            return self.last
        return replace(
            self.last,
            text="".join(part.text for part in parts),
            reasoning="".join(part.reasoning for part in parts),
            logprobs=tuple(lp for part in parts for lp in part.logprobs),
            tool_calls=tuple(call for part in parts for call in part.tool_calls),
        )


class VLLMStream:
    """The deltas of one request; see :class:`trio_responses.engine.base.EngineStream`."""

    def __init__(self, engine: VLLMEngine, request_id: str) -> None:
        self._engine = engine
        self.request_id = request_id
        # Deltas not read yet: merged into one, except where merging would reorder the
        # output (see _push), so rarely more than one.
        self._pending: collections.deque[_Merged] = collections.deque()
        self._finished = False
        self._closed = False
        self._error: str | None = None
        self._lot = trio.lowlevel.ParkingLot()
        # The reader's listener (engine.base.ListenedStream), offered a step's delta
        # while the reader waits with nothing pending.
        self._listener: DeltaListener | None = None
        self._waiting = False

    def __aiter__(self) -> VLLMStream:
        return self

    def listen(self, listener: DeltaListener | None) -> None:
        self._listener = listener

    async def __anext__(self) -> EngineDelta:
        while True:
            if self._pending:
                delta = self._pending.popleft().delta()
                await trio.lowlevel.checkpoint()
                return delta
            if self._error is not None:
                raise errors.EngineError(self._error)
            if self._finished or self._closed:
                raise StopAsyncIteration
            self._waiting = True
            try:
                await self._lot.park()
            finally:
                self._waiting = False

    def abort(self) -> bool:
        """Abort the request now unless it finished; idempotent. True if this call
        aborted it."""
        if self._closed:
            return False
        self._closed = True
        self._pending.clear()
        aborted = not self._finished and self._error is None
        if aborted:
            self._engine._abort(self.request_id)
        self._lot.unpark_all()
        return aborted

    async def aclose(self) -> None:
        """Abort the request unless it finished; idempotent, never blocks."""
        self.abort()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _push(self, delta: EngineDelta) -> None:
        listener = self._listener
        if (listener is not None and self._waiting and not self._pending
                and delta.finish_reason is None and self._offer(listener, delta)):
            return  # the reader took it in the hand-over and is not woken
        last = self._pending[-1] if self._pending else None
        if last is not None and last.accepts(delta):
            last.add(delta)
        else:
            self._pending.append(_Merged(delta))
        if delta.finish_reason is not None:
            self._finished = True
        self._lot.unpark_all()

    def _offer(self, listener: DeltaListener, delta: EngineDelta) -> bool:
        try:
            return listener(delta)
        except Exception:  # a bug in the reader's listener: its request fails
            log.exception("a delta listener failed")
            self._fail("Internal error in the delta listener.")
            return True

    def _fail(self, message: str) -> None:
        if not self._finished:
            self._error = message
        self._lot.unpark_all()


class VLLMEngine:
    """The Engine protocol over vLLM's ``LLMEngine`` running on a dedicated thread."""

    def __init__(
        self,
        factory: Callable[[], LoadedEngine],
        *,
        model_name: str,
        stop_timeout: float = 30.0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._factory = factory
        self._model_name = model_name
        self._stop_timeout = stop_timeout
        # Front-end settings given with the engine flags (--tool-call-parser, ...).
        self.options: Mapping[str, Any] = dict(options or {})
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._streams: dict[str, VLLMStream] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._loaded: LoadedEngine | None = None
        self._started = trio.Event()
        self._stopped = trio.Event()
        self._start_error: BaseException | None = None
        self._dead: str | None = None
        self._closing = False
        self._render_limiter = trio.CapacityLimiter(1)
        self._running = 0
        self._steps = 0
        self._submitted_total = 0
        self._aborted_total = 0

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def parses_tool_calls(self) -> bool:
        """Whether tool calls are parsed by vLLM's parser (--tool-call-parser with
        --enable-auto-tool-choice), with the tools rendered by the model's template."""
        return self._loaded is not None and self._loaded.tool_calls is not None

    @property
    def renders_tools(self) -> bool:
        """Whether the model's chat template lists the tools it is given."""
        return self._loaded is not None and self._loaded.renderer.template_lists_tools

    @property
    def sampling_defaults(self) -> Mapping[str, float]:
        """The model's sampling defaults (its generation config), once started."""
        return {} if self._loaded is None else self._loaded.sampling_defaults

    @property
    def max_model_len(self) -> int:
        """The model's context in tokens; 0 until the engine has loaded."""
        return 0 if self._loaded is None else self._loaded.renderer.max_model_len

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("VLLMEngine.start() was already called")
        self._token = trio.lowlevel.current_trio_token()
        # Daemon: an interpreter exiting without aclose() must not wait on an idle thread.
        worker = EngineWorker(
            self._factory,
            self._commands,
            self._token,
            Callbacks(self._on_started, self._on_batch, self._on_dead, self._on_stopped),
        )
        self._thread = threading.Thread(target=worker.run, name="vllm-engine", daemon=True)
        self._thread.start()
        try:
            await self._started.wait()
        except BaseException:
            self._closing = True
            self._commands.put(Stop())
            raise
        if self._start_error is not None:
            raise self._start_error

    async def aclose(self) -> None:
        """Abort everything, stop the thread, shut the engine core down (bounded)."""
        if self._closing:
            await trio.lowlevel.checkpoint()
            return
        self._closing = True
        self._fail_all("the engine is shutting down")
        if self._thread is None:
            return
        self._commands.put(Stop())
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._stop_timeout):
                await self._stopped.wait()
            if not self._stopped.is_set() and self._loaded is not None:
                # The thread is stuck in step() (a hung engine core): stop the core from
                # here so the step fails and the thread ends.
                log.warning("vLLM engine thread did not stop in %.0f s", self._stop_timeout)
                with trio.move_on_after(10):
                    await trio.to_thread.run_sync(
                        self._loaded.core.shutdown, abandon_on_cancel=True
                    )

    async def submit(self, request: EngineRequest) -> VLLMStream:
        self._check_available()
        loaded = self._require_loaded()
        prepared = await trio.to_thread.run_sync(
            loaded.renderer.prepare, request, limiter=self._render_limiter
        )
        parse_tools = request.parse_tool_calls and loaded.tool_calls is not None
        params = loaded.make_params(request.sampling, prepared.max_tokens, parse_tools)
        # The engine may have died while we rendered.
        self._check_available()
        # Our own unique id: a client's request_id may repeat.
        request_id = f"{request.request_id}-{next(self._ids)}"
        engine_prompt: dict[str, Any] = {"prompt_token_ids": prepared.token_ids}
        if request.cache_salt is not None:
            engine_prompt["cache_salt"] = request.cache_salt
        stream = VLLMStream(self, request_id)
        self._streams[request_id] = stream
        self._submitted_total += 1
        self._commands.put(
            Add(
                request_id,
                engine_prompt,
                params,
                request.priority,
                len(prepared.token_ids),
                request.sampling.top_logprobs,
                thinking_flag(request.reasoning_effort),
                request.tools if parse_tools else None,
            )
        )
        return stream

    async def count_tokens(self, request: EngineRequest) -> int:
        self._check_available()
        renderer = self._require_loaded().renderer
        return await trio.to_thread.run_sync(renderer.count, request, limiter=self._render_limiter)

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(
            running=self._running,
            submitted_total=self._submitted_total,
            aborted_total=self._aborted_total,
            healthy=self._loaded is not None and self._dead is None and not self._closing,
            extra={"steps": self._steps, "streams": len(self._streams)},
        )

    # -- Trio side ------------------------------------------------------------------

    def _check_available(self) -> None:
        if self._dead is not None:
            raise errors.EngineUnavailable(f"the engine is not running: {self._dead}")
        if self._closing:
            raise errors.EngineUnavailable("the engine is shutting down")
        if self._loaded is None:
            raise errors.EngineUnavailable("the engine has not started")

    def _require_loaded(self) -> LoadedEngine:
        if self._loaded is None:
            raise errors.EngineUnavailable("the engine has not started")
        return self._loaded

    def _abort(self, request_id: str) -> None:
        if self._streams.pop(request_id, None) is not None:
            self._aborted_total += 1
            # Queued first: the engine thread takes it after the step that abort_soon
            # may end early, and it is what makes the engine forget the request.
            self._commands.put(Abort(request_id))
            if self._loaded is not None and self._loaded.abort_soon is not None:
                self._loaded.abort_soon(request_id)

    def _fail_all(self, message: str) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream._fail(message)

    def _on_started(self, loaded: LoadedEngine | None, error: BaseException | None) -> None:
        self._loaded, self._start_error = loaded, error
        self._started.set()

    def _on_batch(self, batch: Batch) -> None:
        self._steps += batch.step
        self._running = batch.running
        for request_id, delta in batch.deltas:
            stream = self._streams.get(request_id)
            if stream is None:
                continue  # aborted: the engine ran one step ahead
            if delta.finish_reason is not None:
                del self._streams[request_id]
            stream._push(delta)
        for request_id, message in batch.failures:
            stream = self._streams.pop(request_id, None)
            if stream is not None:
                stream._fail(message)

    def _on_dead(self, message: str) -> None:
        if self._dead is None:
            self._dead = message
        self._running = 0
        self._fail_all(f"the engine died: {message}")

    def _on_stopped(self) -> None:
        self._running = 0
        self._stopped.set()
