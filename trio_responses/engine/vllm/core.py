"""vLLM's ``LLMEngine``, built and adapted for the bridge's engine thread.

:func:`load_engine` is the bridge's factory body: it runs on the engine thread, builds
``LLMEngine`` from ``EngineArgs``, loads a separate tokenizer for the Trio side (never the
engine's cached instance: a Hugging Face tokenizer used from two threads at once can
raise "Already borrowed"), reads the model's default sampling parameters, and with
``--reasoning-parser`` (and ``--tool-call-parser --enable-auto-tool-choice``) builds vLLM's
parsers for the worker (each with a tokenizer of its own, used only on the engine
thread).

:class:`LLMEngineCore` gives the engine the small surface the worker uses
(:class:`~trio_responses.engine.vllm.worker.CoreEngine`), and closes one gap of
vLLM 0.32's synchronous multiprocess client: when the engine core process dies, the
client's monitor thread notices and cleans up, but a ``step()`` already waiting in
``get_output()`` is never woken, so the engine thread would wait forever. A watchdog
thread polls the client's ``engine_dead`` flag and then puts ``EngineDeadError`` on the
client's output queue, which is where ``get_output()`` waits; ``shutdown()`` does the
same, so a step stuck on a hung core ends too. With the engine core in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) there is no such queue and no watchdog.

With the core in its own process it also lets an abort reach the core while the engine
thread is blocked in ``step()`` (:meth:`LLMEngineCore.abort_soon`, called on the Trio
thread), as vLLM's own ``AsyncLLM`` does: the core applies an abort that arrives during
a forward pass before it builds that step's outputs (``EngineCore._process_aborts_queue``),
so the aborted requests stop a step sooner than when the engine thread sends the abort
after the step. How this is safe, from vLLM 0.32's ``core_client.py``:

- The client's only input socket is one ZMQ ROUTER (``input_socket``), written by
  ``SyncMPClient._send_input`` (add, abort, utility calls; ``LLMEngine.step`` sends the
  aborts of stop strings through it too), read by no thread after start-up. ZMQ sockets
  are not thread-safe, but may move between threads behind a full memory barrier: every
  send goes through our wrapper of ``_send_input`` under one lock, whichever thread sends.
  It never blocks under the lock: vLLM sets ``SNDHWM`` 0 and no ``ROUTER_MANDATORY``.
- The socket is closed by ``client.shutdown()`` (ours, or the client's monitor thread's
  when the core process dies) after ``engine_dead`` is set; our wrapper of ``shutdown``
  marks the guard closed under the lock first, so no send of ours overlaps the close.
- The core knows a request by vLLM's internal id (``LLMEngine.add_request`` returns it),
  not ours: ``abort_soon`` maps it. The engine thread still aborts through
  ``LLMEngine.abort_request`` between steps (the output processor must forget the
  request, and that is its thread's state); the core takes the second abort as a no-op.
- A core whose every request was aborted sends no more outputs, so a ``step()`` already
  waiting in ``get_output()`` would wait forever: ``abort_soon`` puts an empty
  ``EngineCoreOutputs`` on the client's output queue (one at a time), which ends that
  step with nothing, and the engine thread then applies the abort from its command queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from trio_responses.engine.base import SamplingOptions
from trio_responses.engine.reasoning import ReasoningParsers
from trio_responses.engine.tool_parsing import ToolCallParsers
from trio_responses.engine.vllm import prompt as prompting
from trio_responses.engine.vllm.worker import LoadedEngine

log = logging.getLogger(__name__)

# Seconds the engine core gets to shut down when the bridge stops.
CORE_SHUTDOWN_TIMEOUT = 20.0
# How often the watchdog looks at the client's engine_dead flag.
WATCHDOG_INTERVAL = 0.2


def load_engine(engine_args: Any, options: Mapping[str, Any]) -> LoadedEngine:
    """Build vLLM's engine and our renderer; runs on the bridge's engine thread."""
    from vllm.tokenizers.registry import get_tokenizer
    from vllm.v1.engine.llm_engine import LLMEngine

    from trio_responses.engine.vllm import plugin as vllm_plugin

    # vLLM runs it from the entry point too; called here as well for an engine core in
    # this process when the package's entry points are not installed (a source tree).
    vllm_plugin.register()
    engine = LLMEngine.from_engine_args(engine_args)
    try:
        config = engine.model_config

        def load_tokenizer() -> Any:
            return get_tokenizer(
                config.tokenizer,
                runner_type=config.runner_type,
                tokenizer_mode=config.tokenizer_mode,
                revision=config.tokenizer_revision,
                trust_remote_code=config.trust_remote_code,
            )

        renderer = prompting.PromptRenderer(
            load_tokenizer(),
            max_model_len=config.max_model_len,
            chat_template=options.get("chat_template"),
        )
        defaults = dict(config.get_diff_sampling_param())
        reasoning = tool_calls = None
        if options.get("tool_call_parser") and options.get("enable_auto_tool_choice"):
            tool_calls = ToolCallParsers(options["tool_call_parser"], load_tokenizer(),
                                         plugin=options.get("tool_parser_plugin"))
        if engine_args.reasoning_parser:
            # A third tokenizer, used only on this (the engine) thread.
            reasoning = ReasoningParsers(engine_args.reasoning_parser, load_tokenizer(),
                                         plugin=engine_args.reasoning_parser_plugin)
    except BaseException:
        engine.engine_core.shutdown()
        raise
    if tool_calls is not None:
        renderer.template_lists_tools  # noqa: B018 -- computed here, off the Trio thread
    keep_for_reasoning = reasoning is not None and reasoning.keep_special_tokens
    keep_for_tools = tool_calls is not None and tool_calls.keep_special_tokens

    def make_params(sampling: SamplingOptions, max_tokens: int, parse_tools: bool) -> Any:
        keep = keep_for_reasoning or (parse_tools and keep_for_tools)
        return prompting.sampling_params(sampling, max_tokens, defaults,
                                         keep_special_tokens=keep)

    core = LLMEngineCore(engine)
    return LoadedEngine(core, renderer, make_params, reasoning, tool_calls,
                        sampling_defaults=prompting.model_sampling_defaults(defaults),
                        abort_soon=core.abort_soon if core.aborts_early else None)


class LLMEngineCore:
    """``LLMEngine`` with the surface the worker uses, plus the dead-core watchdog and,
    with the core in its own process, :meth:`abort_soon`."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._stopped = threading.Event()
        client = engine.engine_core
        self._client = client
        # Only the multiprocess client has these (vLLM 0.32's SyncMPClient).
        self._outputs = getattr(client, "outputs_queue", None)
        self._resources = getattr(client, "resources", None)
        # vLLM's internal id of each request the core may still run, by our id; written
        # on the engine thread, read by abort_soon on the Trio thread (single dict
        # operations, whole under the GIL).
        self._internal: dict[str, str] = {}
        self._send_lock = threading.Lock()
        self._sends_closed = False
        # An empty output is on the client's output queue (abort_soon), not yet taken by
        # a step: one is enough to end the step that waits.
        self._wake_pending = False
        self._client_send: Callable[..., Any] | None = None
        self._empty_outputs: Callable[[], Any] | None = None
        if self._outputs is not None and self._resources is not None:
            threading.Thread(target=self._watch, name="vllm-engine-watchdog", daemon=True).start()
            send = getattr(client, "_send_input", None)
            if send is not None:
                from vllm.v1.engine import EngineCoreOutputs

                self._empty_outputs = EngineCoreOutputs
                self._client_send = send
                client_shutdown = client.shutdown
                # Instance attributes shadow the client's methods, so every send (the
                # client's own add/abort/utility calls included) takes the lock.
                client._send_input = self._locked_send

                def shutdown(timeout: float | None = None) -> None:
                    self._close_sends()
                    client_shutdown(timeout)

                client.shutdown = shutdown

    @property
    def aborts_early(self) -> bool:
        """Whether :meth:`abort_soon` reaches the core (the multiprocess client)."""
        return self._client_send is not None

    def add_request(self, request_id: str, prompt: Any, params: Any, priority: int) -> None:
        from vllm.exceptions import VLLMValidationError

        try:
            # The renderer turns our token-id prompt into the engine's input: passing the
            # prompt dict to add_request does the same but is deprecated in vLLM 0.32.
            (engine_input,) = self._engine.renderer.render_cmpl([prompt])
            internal = self._engine.add_request(request_id, engine_input, params,
                                                priority=priority)
        except VLLMValidationError as exc:
            # The worker takes ValueError as "this request is refused", anything else as
            # "the engine is broken".
            raise ValueError(str(exc)) from exc
        if self._client_send is not None:
            self._internal[request_id] = internal

    def abort_request(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self._internal.pop(request_id, None)
        self._engine.abort_request(request_ids)

    def abort_soon(self, request_id: str) -> None:
        """Send the core an abort of ``request_id`` now, even while the engine thread
        waits in ``step()``; called on the Trio thread, never blocks, never raises. The
        engine thread must still get its own ``Abort`` (queued before this call)."""
        internal = self._internal.get(request_id)
        if internal is None or self._outputs is None or self._empty_outputs is None:
            return  # not at the core yet (or not any more), or an in-process core
        try:
            # The client's abort_requests: skips a dead core; sends through _locked_send.
            self._client.abort_requests([internal])
        except Exception:
            log.debug("early abort of %s failed", request_id, exc_info=True)
            return
        if not self._wake_pending:
            self._wake_pending = True
            self._outputs.put_nowait(self._empty_outputs())

    def step(self) -> list[Any]:
        outputs = list(self._engine.step())
        # Cleared after the step: an abort_soon from now on wakes the next one, and the
        # engine thread drains its commands (with any Abort queued so far) before it.
        self._wake_pending = False
        if self._internal:
            for output in outputs:
                if output.finished:
                    self._internal.pop(output.request_id, None)
        return outputs

    def has_unfinished_requests(self) -> bool:
        return bool(self._engine.has_unfinished_requests())

    def get_num_unfinished_requests(self) -> int:
        return int(self._engine.get_num_unfinished_requests())

    def shutdown(self) -> None:
        """Shut the engine core down (idempotent; may be called from another thread)."""
        self._stopped.set()
        try:
            # LLMEngine has no shutdown of its own; its core client does.
            self._engine.engine_core.shutdown(timeout=CORE_SHUTDOWN_TIMEOUT)
        finally:
            self._wake_step()

    def _locked_send(self, request_type: Any, request: Any) -> None:
        """The client's ``_send_input``, one thread at a time, never after shutdown."""
        assert self._client_send is not None
        with self._send_lock:
            if self._sends_closed:
                from vllm.v1.engine.exceptions import EngineDeadError

                raise EngineDeadError()
            self._client_send(request_type, request)

    def _close_sends(self) -> None:
        # Under the lock: a send in progress ends before the socket can be closed.
        with self._send_lock:
            self._sends_closed = True

    def _watch(self) -> None:
        while not self._stopped.wait(WATCHDOG_INTERVAL):
            if getattr(self._resources, "engine_dead", False):
                self._wake_step()
                return

    def _wake_step(self) -> None:
        """Make a ``step()`` waiting for the core's output raise ``EngineDeadError``."""
        if self._outputs is None:
            return
        from vllm.v1.engine.exceptions import EngineDeadError

        self._outputs.put_nowait(EngineDeadError())
