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
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from trio_responses.engine.base import SamplingOptions
from trio_responses.engine.reasoning import ReasoningParsers
from trio_responses.engine.tool_parsing import ToolCallParsers
from trio_responses.engine.vllm import prompt as prompting
from trio_responses.engine.vllm.worker import LoadedEngine

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

    return LoadedEngine(LLMEngineCore(engine), renderer, make_params, reasoning, tool_calls,
                        sampling_defaults=prompting.model_sampling_defaults(defaults))


class LLMEngineCore:
    """``LLMEngine`` with the surface the worker uses, plus the dead-core watchdog."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._stopped = threading.Event()
        client = engine.engine_core
        # Only the multiprocess client has these (vLLM 0.32's SyncMPClient).
        self._outputs = getattr(client, "outputs_queue", None)
        self._resources = getattr(client, "resources", None)
        if self._outputs is not None and self._resources is not None:
            threading.Thread(target=self._watch, name="vllm-engine-watchdog", daemon=True).start()

    def add_request(self, request_id: str, prompt: Any, params: Any, priority: int) -> None:
        from vllm.exceptions import VLLMValidationError

        try:
            # The renderer turns our token-id prompt into the engine's input: passing the
            # prompt dict to add_request does the same but is deprecated in vLLM 0.32.
            (engine_input,) = self._engine.renderer.render_cmpl([prompt])
            self._engine.add_request(request_id, engine_input, params, priority=priority)
        except VLLMValidationError as exc:
            # The worker takes ValueError as "this request is refused", anything else as
            # "the engine is broken".
            raise ValueError(str(exc)) from exc

    def abort_request(self, request_ids: list[str]) -> None:
        self._engine.abort_request(request_ids)

    def step(self) -> list[Any]:
        return list(self._engine.step())

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
