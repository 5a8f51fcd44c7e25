"""The engine thread of the vLLM bridge: the only code that touches vLLM's engine.

:class:`EngineWorker.run` is the body of the bridge's ``vllm-engine`` thread. It builds
the engine with the bridge's factory, then loops:

- when the engine has nothing unfinished it blocks on the command queue (a
  ``queue.SimpleQueue`` of :class:`Add` / :class:`Abort` / :class:`Stop`); it never
  calls ``step()`` with nothing running, because with the engine core in another
  process ``step()`` would wait forever for an output;
- otherwise it drains the queue without blocking (so an abort acts before the next
  step; with the core in its own process the bridge has already sent the core the
  abort, see ``LoadedEngine.abort_soon``), runs one ``step()``, and hands the whole
  step to Trio as ONE :class:`Batch` through one ``TrioToken.run_sync_soon`` call: the
  new deltas, per-request failures, and the engine's own count of unfinished requests.
  When the drain aborted something and requests remain, the new count goes to Trio at
  once, in a batch of its own (``step=False``), so the running-requests gauge drops
  when the abort lands rather than a step later.

It never waits for Trio: a batch is posted and the next step starts. When the Trio run
is gone (``RunFinishedError``), on :class:`Stop`, or when the engine raises (it died),
it aborts what it still tracks and shuts the engine core down before the thread ends;
the bridge is told through ``on_dead`` / ``on_stopped``.

Converting vLLM's ``RequestOutput`` into :class:`EngineDelta` happens here, with
per-request bookkeeping (prompt length, output tokens so far, logprobs wanted, and with
``--reasoning-parser`` / ``--tool-call-parser`` the request's :class:`TurnParsing`, fed
every step's new text and token ids) that only this thread reads or writes. A parser
that raises fails its own request only: the engine aborts it and its stream gets the
error.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from trio_responses.engine.base import EngineDelta, SamplingOptions, TokenLogprob
from trio_responses.engine.output_parsing import ParsedStep, ParsingFailed, TurnParsing
from trio_responses.engine.reasoning import ReasoningParsers
from trio_responses.engine.tool_parsing import ToolCallParsers
from trio_responses.engine.vllm import prompt as prompting

log = logging.getLogger(__name__)


class CoreEngine(Protocol):
    """What the worker needs from vLLM's ``LLMEngine`` (adapted in ``core``)."""

    def add_request(self, request_id: str, prompt: Any, params: Any, priority: int) -> None: ...

    def abort_request(self, request_ids: list[str]) -> None: ...

    def step(self) -> list[Any]: ...

    def has_unfinished_requests(self) -> bool: ...

    def get_num_unfinished_requests(self) -> int: ...

    def shutdown(self) -> None: ...


@dataclass(slots=True)
class LoadedEngine:
    """What the bridge's factory returns (it runs on the engine thread)."""

    core: CoreEngine
    renderer: prompting.PromptRenderer
    # Builds the engine's sampling parameters (vLLM's SamplingParams) for one request,
    # given whether its tool calls are parsed here; called on the Trio thread.
    make_params: Callable[[SamplingOptions, int, bool], Any]
    # --reasoning-parser: splits each request's output on this thread.
    reasoning: ReasoningParsers | None = None
    # --tool-call-parser with --enable-auto-tool-choice: parses calls on this thread.
    tool_calls: ToolCallParsers | None = None
    # The model's sampling defaults (its generation config), which make_params applies.
    sampling_defaults: Mapping[str, Any] = field(default_factory=dict)
    # Sends the core an abort at once, even during a step (the core in its own process:
    # ``LLMEngineCore.abort_soon``); called on the Trio thread after the Abort command
    # is queued. None: aborts wait for the engine thread, between steps.
    abort_soon: Callable[[str], None] | None = None


@dataclass(slots=True)
class Add:
    request_id: str
    prompt: dict[str, Any]
    params: Any
    priority: int
    prompt_tokens: int
    top_logprobs: int | None
    # The request's enable_thinking for the reasoning parser (None: not given).
    thinking: bool | None = None
    # Its tools (chat-completions form) when its calls are parsed here.
    tools: tuple[Any, ...] | None = None


@dataclass(slots=True)
class Abort:
    request_id: str


class Stop:
    pass


Command = Add | Abort | Stop


@dataclass(slots=True)
class Batch:
    """Everything one engine step produced, handed to Trio in one call."""

    deltas: list[tuple[str, EngineDelta]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    running: int = 0
    # False for a batch that only reports the count (aborts landed between steps).
    step: bool = True


@dataclass(slots=True)
class _Tracked:
    prompt_tokens: int
    top_logprobs: int | None
    output_tokens: int = 0
    parsing: TurnParsing | None = None


@dataclass(slots=True)
class Callbacks:
    """Bridge methods the worker posts to Trio (each runs on the Trio thread)."""

    on_started: Callable[[LoadedEngine | None, BaseException | None], None]
    on_batch: Callable[[Batch], None]
    on_dead: Callable[[str], None]
    on_stopped: Callable[[], None]


class EngineWorker:
    def __init__(
        self,
        factory: Callable[[], LoadedEngine],
        commands: queue.SimpleQueue[Command],
        token: trio.lowlevel.TrioToken,
        callbacks: Callbacks,
    ) -> None:
        self._factory = factory
        self._commands = commands
        self._token = token
        self._callbacks = callbacks
        self._tracked: dict[str, _Tracked] = {}
        self._reasoning: ReasoningParsers | None = None
        self._tool_calls: ToolCallParsers | None = None

    def run(self) -> None:
        """The thread's body."""
        try:
            loaded = self._factory()
        except BaseException as exc:
            self._post(self._callbacks.on_started, None, exc)
            self._post(self._callbacks.on_stopped)
            return
        core = loaded.core
        self._reasoning, self._tool_calls = loaded.reasoning, loaded.tool_calls
        try:
            if self._post(self._callbacks.on_started, loaded, None):
                self._serve(core)
        except BaseException as exc:
            log.exception("the vLLM engine failed")
            self._post(self._callbacks.on_dead, f"{type(exc).__name__}: {exc}")
        finally:
            self._shutdown(core)
            self._post(self._callbacks.on_stopped)

    def _post(self, fn: Callable[..., object], *args: object) -> bool:
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            return False
        return True

    def _shutdown(self, core: CoreEngine) -> None:
        try:
            if self._tracked:
                core.abort_request(list(self._tracked))
        except Exception:
            log.debug("abort at shutdown failed", exc_info=True)
        self._tracked.clear()
        try:
            core.shutdown()
        except Exception:
            log.warning("vLLM engine core shutdown failed", exc_info=True)

    def _serve(self, core: CoreEngine) -> None:
        running = -1
        while True:
            batch = Batch()
            if not core.has_unfinished_requests():
                if running != 0:
                    # Tell Trio the engine is idle before sleeping.
                    running = 0
                    if not self._post(self._callbacks.on_batch, batch):
                        return
                    batch = Batch()
                if not self._apply(core, self._commands.get(), batch):
                    return
            aborted = False
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                aborted = aborted or isinstance(command, Abort)
                if not self._apply(core, command, batch):
                    return
            if aborted and core.has_unfinished_requests():
                # The gauge follows the abort now, not after the step below.
                batch.running = running = core.get_num_unfinished_requests()
                batch.step = False
                if not self._post(self._callbacks.on_batch, batch):
                    return
                batch = Batch()
            if core.has_unfinished_requests():
                failed = [output.request_id for output in core.step()
                          if not self._convert(output, batch)]
                if failed:
                    core.abort_request(failed)
            running = batch.running = core.get_num_unfinished_requests()
            if not self._post(self._callbacks.on_batch, batch):
                return

    def _apply(self, core: CoreEngine, command: Command, batch: Batch) -> bool:
        """Carry out one command; False means stop."""
        if isinstance(command, Stop):
            return False
        if isinstance(command, Abort):
            if self._tracked.pop(command.request_id, None) is not None:
                core.abort_request([command.request_id])
            return True
        try:
            parsing = self._parsing(command)
        except Exception as exc:  # a parser refusing this request's tools, say
            batch.failures.append((command.request_id, f"the output parser refused the "
                                   f"request: {type(exc).__name__}: {exc}"))
            return True
        try:
            core.add_request(command.request_id, command.prompt, command.params, command.priority)
        except (ValueError, TypeError) as exc:
            # vLLM's validation of one request; anything else means the engine is broken.
            batch.failures.append((command.request_id, f"the engine refused the request: {exc}"))
            return True
        self._tracked[command.request_id] = _Tracked(
            command.prompt_tokens, command.top_logprobs, parsing=parsing)
        return True

    def _parsing(self, command: Add) -> TurnParsing | None:
        """The request's parser states, when vLLM's parsers are configured."""
        splitter = calls = None
        if self._reasoning is not None:
            splitter = self._reasoning.splitter(
                thinking=command.thinking,
                prompt_token_ids=command.prompt.get("prompt_token_ids", ()))
        if self._tool_calls is not None and command.tools is not None:
            calls = self._tool_calls.stream(command.tools)
        return None if splitter is None and calls is None else TurnParsing(splitter, calls)

    def _convert(self, output: Any, batch: Batch) -> bool:
        """Add the output's delta to the batch; False if the request failed here (its
        output parser raised) and the engine must abort it."""
        request_id: str = output.request_id
        state = self._tracked.get(request_id)
        if state is None:
            return True  # aborted: the engine runs one step ahead
        completion = output.outputs[0]
        state.output_tokens += len(completion.token_ids)
        finish = None
        if output.finished:
            del self._tracked[request_id]
            try:
                finish = prompting.finish_reason(completion.finish_reason)
            except ValueError:
                reason = completion.finish_reason
                batch.failures.append((request_id, f"the engine ended the request ({reason})"))
                return True
        logprobs: tuple[TokenLogprob, ...] = ()
        if state.top_logprobs is not None:
            logprobs = prompting.convert_logprobs(
                completion.token_ids, completion.logprobs, state.top_logprobs
            )
            if finish == "stop" and not isinstance(completion.stop_reason, str):
                # The last token is the EOS (or a stop token id): not part of the text.
                logprobs = logprobs[:-1]
        parsed = ParsedStep(text=completion.text)
        if state.parsing is not None:
            try:
                parsed = state.parsing.feed(completion.text, completion.token_ids,
                                            last=finish is not None)
            except ParsingFailed as exc:
                log.exception("request %s: %s", request_id, exc)
                self._tracked.pop(request_id, None)
                batch.failures.append((request_id, str(exc)))
                return bool(output.finished)
        text = parsed.text
        if text != completion.text:
            # Logprobs are per token of the whole output: they match the answer's text
            # only where none of it was reasoning, a call or markup.
            logprobs = ()
        delta = EngineDelta(
            text=text,
            logprobs=logprobs,
            finish_reason=finish,
            prompt_tokens=state.prompt_tokens,
            cached_tokens=output.num_cached_tokens or 0,
            output_tokens=state.output_tokens,
            reasoning=parsed.reasoning,
            reasoning_tokens=state.parsing.reasoning_tokens if state.parsing else 0,
            tool_calls=parsed.tool_calls,
        )
        batch.deltas.append((request_id, delta))
        return True
