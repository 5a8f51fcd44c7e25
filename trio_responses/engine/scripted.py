"""A deterministic engine with no model, for tests and for client developers.

``python -m trio_responses --engine scripted`` serves the whole API with it. A reply is
a function of the request (by default it echoes the last user message), split into word
tokens and sent one token per delta, ``token_delay`` seconds apart (``trio.sleep``, so
tests can run it under ``MockClock``; with ``step_pacing``, as a GPU engine steps: one
timer for all streams, each step's deltas handed over together and offered to the
readers' listeners, :mod:`.scripted_steps`; the server's default). It honours
``max_tokens``, within the room the prompt leaves in ``max_model_len`` as vLLM does (a
length stop), structured output (it writes a JSON value that matches the schema; with a
grammar, its reply for as long as the grammar allows and then the shortest way to an
accepted end), and simulates prefix caching (the same prompt and salt a second time
reports it cached). Its context is ``max_model_len`` words: a longer prompt is refused,
or truncated as the vLLM bridge does (``truncation: "auto"``, :mod:`.truncation`);
``requests`` records what the model saw.

Agent scripts, for tests of agent loops with no model (Codex CLI, openai-agents): with
tools given, ``[[call:NAME]]`` in the last user message makes a call of tool NAME (with
arguments made up to fit its schema), ``[[call:NAME {"cmd": "ls"}]]`` one with those
arguments; ``[[then]]`` separates the script's turns (one turn per model turn, counted
since the last user message), and once the calls are done and their outputs in the
input, the reply reports the last output (:func:`script_step`). A compaction keeps the
script's place: asked for a summary (runtime/compaction.py), the engine writes how many
turns were done and the last output (``[[done:N]] The tool returned: …``), and a prompt
that restores that summary goes on from turn N.

Failure injection, by the last user message or by constructor: ``[[fail]]`` makes the
request fail after its first token (EngineError), ``[[stall]]`` makes it wait forever
after its first token. Every submitted request is recorded (``requests``), and every
abort (``aborted``), so tests can assert what reached the engine.

Reasoning: ``[[think]]`` in the last user message makes the reply start with a
``<think>...</think>`` block, as a thinking model writes (not when the request asked for
reasoning effort ``none``). Given ``reasoning`` (vLLM's reasoning parsers, see
:mod:`trio_responses.engine.reasoning`) the engine splits its output with them, and given
``tool_calls`` (vLLM's tool parsers, :mod:`trio_responses.engine.tool_parsing`) it parses
the calls of requests that ask it to, as the vLLM bridge does; it then counts and sends
tokens as the parsers' tokenizer splits the text. :meth:`ScriptedEngine.from_flags` builds
them from vLLM's flags (``python -m trio_responses --engine scripted --reasoning-parser
qwen3``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio

from ..errors import ContextLengthExceeded, EngineError, EngineUnavailable
from .base import (
    DeltaListener,
    EngineDelta,
    EngineRequest,
    EngineStatistics,
    FinishReason,
    TokenLogprob,
    TopLogprob,
)
from .grammars import matching_text
from .output_parsing import ParsingFailed, TurnParsing
from .parser_flags import parse_parser_flags
from .reasoning import ReasoningParsers, thinking_flag
from .scripted_steps import EngineSteps
from .summary_prompt import SUMMARY_INSTRUCTION, SUMMARY_PREFIX
from .tool_parsing import ToolCallParsers
from .truncation import drop_oldest

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\s*\S+|\s+")


def last_user_text(request: EngineRequest) -> str:
    for message in reversed(request.messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


# [[call:NAME]] or [[call:NAME {"json": "arguments"}]]; [[then]] separates turns.
_CALL = re.compile(r"\[\[call:([A-Za-z0-9_-]+)\s*")
THEN = "[[then]]"


def echo_reply(request: EngineRequest) -> str:
    """Echo the last user message, or play the agent script in it (:func:`script_step`).
    ``[[think]]`` puts a ``<think>`` block first."""
    reply = _answer(request)
    if "[[think]]" in last_user_text(request) and request.reasoning_effort != "none":
        words = len(last_user_text(request).replace("[[think]]", " ").split())
        return f"<think>The user wrote {words} words. I will answer.</think>{reply}"
    return reply


def _answer(request: EngineRequest) -> str:
    text = last_user_text(request).replace("[[think]]", "").strip()
    if text == SUMMARY_INSTRUCTION:
        return _summary(request.messages[:-1], text)
    calls = script_step(request)
    if calls:
        return "\n".join(calls)
    last = request.messages[-1] if request.messages else {}
    if last.get("role") == "tool":
        return f"The tool returned: {last.get('content')}"
    _, report = _restored_summary(request.messages)
    if report:
        return report  # the script ran out before a compaction took its last output
    return f"You said: {text}" if text else "Hello from the scripted engine."


# In a summary the scripted engine writes: how many turns of the agent script were done.
_DONE = re.compile(r"^\[\[done:(\d+)\]\] ?")


def _summary(history: Sequence[Mapping[str, Any]], instruction: str) -> str:
    """The scripted engine's summary of ``history`` for a compaction: where the agent
    script is (``[[done:N]]``, so that it goes on after the compaction instead of starting
    again) and the last tool output, if a script has begun; else the usual echo."""
    done = script_turns_done(history)
    last = history[-1] if history else {}
    if last.get("role") == "tool":
        report = f"The tool returned: {last.get('content')}"
    else:
        report = _restored_summary(history)[1] or f"You said: {instruction}"
    return f"[[done:{done}]] {report}" if done else report


def _restored_summary(messages: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """The script turns and the report a compaction's restored summary holds (0, "" when
    there is none)."""
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) \
                and content.startswith(SUMMARY_PREFIX):
            summary = content[len(SUMMARY_PREFIX):]
            marker = _DONE.match(summary)
            if marker is not None:
                return int(marker.group(1)), summary[marker.end():]
    return 0, ""


def script_turns_done(messages: Sequence[Mapping[str, Any]]) -> int:
    """Turns of the agent script done: the model turns with calls since the last user
    message, and those a compaction's summary counted before it."""
    return _restored_summary(messages)[0] + _call_turns_since_user(messages)


def script_step(request: EngineRequest) -> list[str]:
    """The calls of this turn of the agent script in the last user message, in the
    built-in format: the script is turns separated by ``[[then]]``, each with its
    ``[[call:NAME]]`` markers (several make parallel calls), NAME a tool the request
    offers. A marker's JSON object, if it has one, is the call's arguments; otherwise
    they are made up to fit the tool's schema. The turn is the number of turns with
    calls since the last user message; once the script has run out (or its turn calls
    no offered tool), the model answers: it reports the last tool output."""
    text = last_user_text(request)
    turns = text.split(THEN)
    done = script_turns_done(request.messages)
    if done >= len(turns):
        return []
    blocks = []
    for name, arguments in scripted_calls(turns[done]):
        function = next((tool.get("function", {}) for tool in request.tools
                         if tool.get("function", {}).get("name") == name), None)
        if function is None:
            continue
        if arguments is None:
            arguments = instance_of(function.get("parameters") or {})
        call = {"name": name, "arguments": arguments}
        blocks.append(f"<tool_call>\n{msgspec.json.encode(call).decode()}\n</tool_call>")
    return blocks


def scripted_calls(text: str) -> list[tuple[str, dict[str, Any] | None]]:
    """The ``[[call:NAME]]`` / ``[[call:NAME {...}]]`` markers of ``text``: each tool name
    and its JSON arguments (None when the marker has none)."""
    calls: list[tuple[str, dict[str, Any] | None]] = []
    decoder = json.JSONDecoder()
    position = 0
    while (marker := _CALL.search(text, position)) is not None:
        position = marker.end()
        arguments: Any = None
        if text.startswith("{", position):
            try:
                arguments, position = decoder.raw_decode(text, position)
            except ValueError:
                continue
            while position < len(text) and text[position].isspace():
                position += 1
        if text.startswith("]]", position) and (arguments is None or isinstance(arguments, dict)):
            calls.append((marker.group(1), arguments))
            position += 2
    return calls


def _call_turns_since_user(messages: Sequence[Mapping[str, Any]]) -> int:
    turns = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant" and message.get("tool_calls"):
            turns += 1
    return turns


def instance_of(schema: Mapping[str, Any]) -> Any:
    """A small JSON value valid against a simple JSON schema (enough for tests/demos)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return instance_of(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance_of(sub) for name, sub in props.items()}
    if kind == "array":
        count = int(schema.get("minItems", 1))
        return [instance_of(schema.get("items", {"type": "string"})) for _ in range(count)]
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


class _NoParsers:
    tokenizer = None


def model_tokens(tokenizer: Any, text: str) -> tuple[list[str], list[tuple[int, ...]]]:
    """``text`` as a tokenizer splits it: each token's text and id, so the scripted
    engine streams text the way a model would."""
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    pieces: list[str] = []
    sent = ""
    for end in range(1, len(ids) + 1):
        # Decoding the prefix keeps characters split across tokens whole: a token that
        # ends mid-character sends nothing until the character is complete.
        decoded = tokenizer.decode(ids[:end])
        if decoded.endswith("\ufffd") and end < len(ids):
            pieces.append("")
            continue
        pieces.append(decoded[len(sent):])
        sent = decoded
    return pieces, [(token,) for token in ids]


# Prompts of this many messages or more are counted in a worker thread, at most two at once.
_COUNT_THREAD_MIN_MESSAGES = 64
_COUNT_THREADS = trio.CapacityLimiter(2)


def _count_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(_TOKEN.findall(str(m.get("content") or ""))) + 2 for m in messages)


@dataclass
class _Script:
    tokens: list[str]
    finish: FinishReason
    fail_after: int | None
    stall_after: int | None
    # With vLLM's parsers: each token's ids, and the request's parser states.
    token_ids: list[tuple[int, ...]] | None = None
    parsing: TurnParsing | None = None


class ScriptedStream:
    def __init__(
        self,
        engine: ScriptedEngine,
        request: EngineRequest,
        script: _Script,
        prompt_tokens: int,
        cached_tokens: int,
    ) -> None:
        self._engine = engine
        self._request = request
        self._script = script
        self._prompt_tokens = prompt_tokens
        self._cached_tokens = cached_tokens
        self._sent = 0
        self.finished = False
        self.closed = False
        # Step pacing (engine/scripted_steps.py), once the first token is out: the delta
        # the engine's step handed over and the reader has not taken, or the failure it
        # met; whether the reader waits for one (then a delta is offered to the listener
        # first), and the reader's wait.
        self._stepped = False
        self._ready: EngineDelta | None = None
        self._error: str | None = None
        self._waiting = False
        self._listener: DeltaListener | None = None
        self._lot = trio.lowlevel.ParkingLot()

    def __aiter__(self) -> ScriptedStream:
        return self

    def listen(self, listener: DeltaListener | None) -> None:
        """See :class:`~.base.ListenedStream` (only step pacing offers deltas)."""
        self._listener = listener

    async def __anext__(self) -> EngineDelta:
        if self._stepped:
            return await self._next_step()
        if self.finished or self.closed:
            raise StopAsyncIteration
        engine = self._engine
        if self._sent > 0:
            await trio.sleep(engine.token_delay)
        else:
            await trio.sleep(engine.first_token_delay)
        delta = self._produce()
        if delta is None:
            await trio.sleep_forever()
        steps = engine.steps
        if steps is not None and not self.finished:
            self._stepped = True
            steps.join(self)
        return delta

    async def _next_step(self) -> EngineDelta:
        parked = False
        while True:
            delta = self._ready
            if delta is not None:
                self._ready = None
                if delta.finish_reason is not None:
                    self._end()  # finished once its last delta is read (see step)
                if not parked:
                    await trio.lowlevel.checkpoint()
                return delta
            if self._error is not None:
                raise EngineError(self._error)
            if self.finished or self.closed:
                raise StopAsyncIteration
            self._waiting = parked = True
            try:
                await self._lot.park()
            finally:
                self._waiting = False

    def step(self) -> bool:
        """The engine's step (:class:`~.scripted_steps.EngineSteps`): the next token
        handed to the reader. False once this stream takes no more steps. The request
        only counts as finished once its last delta is read: closed before that, it was
        aborted, as the reader (which never saw the finish) believes."""
        if self.closed or self.finished:
            return False
        if self._ready is not None:
            return True  # not taken yet: nothing this step
        try:
            delta = self._produce(end=False)
        except EngineError as exc:
            self._error = str(exc)
            self._lot.unpark_all()
            return False
        if delta is None:
            return False  # stalled: the reader waits for ever
        listener = self._listener
        try:
            taken = self._waiting and listener is not None and listener(delta)
        except Exception:  # a bug in the reader's listener: the request fails
            log.exception("a delta listener failed")
            self._end()
            self._error = "Internal error in the delta listener."
            self._lot.unpark_all()
            return False
        if not taken:
            self._ready = delta
            self._lot.unpark_all()
        elif delta.finish_reason is not None:
            self._end()
        return delta.finish_reason is None

    def _produce(self, *, end: bool = True) -> EngineDelta | None:
        """The next token's delta (None: the script stalls here; EngineError: it fails).
        ``end``: the last delta ends the request now (else when it is read)."""
        engine, script = self._engine, self._script
        if script.stall_after is not None and self._sent >= script.stall_after:
            return None
        if script.fail_after is not None and self._sent >= script.fail_after:
            self._end()
            raise EngineError("The scripted engine failed this request (failure injection).")
        if not engine.alive:
            self._end()
            raise EngineError("The engine stopped.")
        token = script.tokens[self._sent] if self._sent < len(script.tokens) else ""
        self._sent += 1
        finish = script.finish if self._sent >= len(script.tokens) else None
        if script.parsing is None:  # the common case, once per token: no parser state
            logprobs = self._logprobs(token) if self._request.sampling.top_logprobs is not None \
                else ()
            delta = EngineDelta(text=token, logprobs=logprobs, finish_reason=finish,
                                prompt_tokens=self._prompt_tokens,
                                cached_tokens=self._cached_tokens, output_tokens=self._sent)
        else:
            ids = script.token_ids[self._sent - 1] if script.token_ids is not None else ()
            try:
                parsed = script.parsing.feed(token, ids, last=finish is not None)
            except ParsingFailed as exc:
                self._end()
                raise EngineError(str(exc)) from exc
            delta = EngineDelta(
                text=parsed.text,
                logprobs=self._logprobs(token) if parsed.text == token else (),
                finish_reason=finish,
                prompt_tokens=self._prompt_tokens,
                cached_tokens=self._cached_tokens,
                output_tokens=self._sent,
                reasoning=parsed.reasoning,
                reasoning_tokens=script.parsing.reasoning_tokens,
                tool_calls=parsed.tool_calls,
            )
        if finish is not None and end:
            self._end()
        return delta

    def _logprobs(self, token: str) -> tuple[TokenLogprob, ...]:
        n = self._request.sampling.top_logprobs
        if n is None or not token:
            return ()
        raw = tuple(token.encode())
        tops = tuple(TopLogprob(token=token, logprob=-0.25 * (i + 1), bytes=raw) for i in range(n))
        return (TokenLogprob(token=token, logprob=-0.25, bytes=raw, top=tops),)

    def _end(self) -> None:
        if not self.finished:
            self.finished = True
            self._engine._running.discard(self._request.request_id)

    def abort(self) -> bool:
        if self.closed:
            return False
        self.closed = True
        self._lot.unpark_all()  # a reader waiting for a step's delta: the stream is over
        if self.finished:
            return False
        self._engine.aborted.append(self._request.request_id)
        self._end()
        return True

    async def aclose(self) -> None:
        self.abort()


class ScriptedEngine:
    """The engine protocol with scripted text. See the module docstring."""

    def __init__(
        self,
        *,
        reply: Callable[[EngineRequest], str] = echo_reply,
        token_delay: float = 0.0,
        first_token_delay: float = 0.0,
        model_name: str = "scripted",
        max_model_len: int = 8192,
        reasoning: ReasoningParsers | None = None,
        tool_calls: ToolCallParsers | None = None,
        renders_tools: bool = False,
        sampling_defaults: Mapping[str, float] | None = None,
        stall_when: Callable[[EngineRequest], bool] | None = None,
        step_pacing: bool = False,
    ) -> None:
        self.reply = reply
        # One timer for all streams, a step's deltas handed over together, as a GPU
        # engine steps (engine/scripted_steps.py); else one trio.sleep per stream per
        # token. Either way each stream gets one token per token_delay.
        self.step_pacing = step_pacing
        self._steps = EngineSteps(lambda: self.token_delay)
        # Requests that stall after their first token as ``[[stall]]`` makes them, chosen
        # by the test (a compaction's summary request, whose last message is not theirs).
        self.stall_when = stall_when
        # As a model's generation_config.json would set them (the text is scripted anyway).
        self.sampling_defaults: Mapping[str, float] = dict(sampling_defaults or {})
        # Whether to act as a model whose chat template lists the tools (then the
        # built-in tool instructions are left out when tool_calls parses the calls).
        self.renders_tools = renders_tools
        self.reasoning = reasoning
        self.tool_calls = tool_calls
        self._tokenizer = (reasoning or tool_calls or _NoParsers).tokenizer
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self._model_name = model_name
        self.max_model_len = max_model_len
        self.alive = False
        self.requests: list[EngineRequest] = []
        self.aborted: list[str] = []
        self._running: set[str] = set()
        self._count_threads = trio.CapacityLimiter(2)
        self._seen_prompts: set[tuple[str | None, str]] = set()

    @classmethod
    def from_flags(cls, engine_flags: Sequence[str], *, cache_dir: Path | None = None,
                   **kwargs: Any) -> ScriptedEngine:
        """A scripted engine with vLLM's parsers as vLLM's flags ask for them:
        ``--reasoning-parser`` (``--reasoning-parser-plugin``), ``--tool-call-parser`` with
        ``--enable-auto-tool-choice`` (``--tool-parser-plugin``), over ``--tokenizer``
        (default: the default model's, prepared under ``cache_dir`` if need be). Other
        flags are ignored."""
        flags = parse_parser_flags(engine_flags)
        tool_parser = flags.auto_tool_parser
        if not flags.reasoning_parser and not tool_parser:
            return cls(**kwargs)
        from vllm.tokenizers.registry import get_tokenizer

        from .default_model import ensure_default_model

        tokenizer = get_tokenizer(flags.tokenizer or str(ensure_default_model(cache_dir)))
        if flags.reasoning_parser:
            kwargs["reasoning"] = ReasoningParsers(flags.reasoning_parser, tokenizer,
                                                   plugin=flags.reasoning_parser_plugin)
        if tool_parser:
            kwargs["tool_calls"] = ToolCallParsers(tool_parser, tokenizer,
                                                   plugin=flags.tool_parser_plugin)
        return cls(**kwargs)

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def steps(self) -> EngineSteps | None:
        """What paces the streams after their first token, with step pacing."""
        return self._steps if self.step_pacing and self.token_delay > 0 else None

    @property
    def parses_tool_calls(self) -> bool:
        return self.tool_calls is not None

    async def start(self) -> None:
        self.alive = True

    async def aclose(self) -> None:
        self.alive = False

    def kill(self) -> None:
        """Simulate engine death: live streams fail at their next token."""
        self.alive = False

    def _text(self, request: EngineRequest) -> str:
        sampling = request.sampling
        if sampling.json_schema is not None:
            return msgspec.json.encode(instance_of(sampling.json_schema)).decode()
        if sampling.json_object:
            return "{}"
        if sampling.grammar is not None:
            # Constrained as vLLM constrains a model: the reply while the grammar allows.
            return matching_text(sampling.grammar, self.reply(request),
                                 max_chars=sampling.max_tokens * 8)
        return self.reply(request)

    async def submit(self, request: EngineRequest) -> ScriptedStream:
        await trio.lowlevel.checkpoint()
        if not self.alive:
            raise EngineUnavailable("The engine is not running.")
        request, prompt_tokens = self._fit(request)
        self.requests.append(request)
        key = (request.cache_salt, repr(request.messages))
        cached = prompt_tokens if key in self._seen_prompts else 0
        self._seen_prompts.add(key)
        text = self._text(request)
        full = _TOKEN.findall(text) or [""]
        ids: list[tuple[int, ...]] | None = None
        if self._tokenizer is not None:
            full, ids = model_tokens(self._tokenizer, text)
            if not full:
                full, ids = [""], [()]
        # As vLLM's: the output gets the room the prompt leaves in the context, at most.
        limit = max(1, min(request.sampling.max_tokens, self.max_model_len - prompt_tokens))
        finish: FinishReason = "stop"
        if request.sampling.ignore_eos:
            full = (full * limit)[:limit]
            ids = None if ids is None else (ids * limit)[:limit]
        if len(full) >= limit and (request.sampling.ignore_eos or len(full) > limit):
            full, finish = full[:limit], "length"
            ids = None if ids is None else ids[:limit]
        marker = last_user_text(request)
        script = _Script(
            tokens=full,
            finish=finish,
            fail_after=1 if "[[fail]]" in marker else None,
            stall_after=1 if "[[stall]]" in marker or (
                self.stall_when is not None and self.stall_when(request)) else None,
            token_ids=ids,
            parsing=self._parsing(request),
        )
        self._running.add(request.request_id)
        return ScriptedStream(self, request, script, prompt_tokens, cached)

    def _fit(self, request: EngineRequest) -> tuple[EngineRequest, int]:
        """The request as the model sees it and its prompt length: with ``truncate``, the
        oldest history dropped until it fits (as the vLLM bridge does, by word count)."""
        prompt_tokens = _count_tokens(request.messages)
        if prompt_tokens + 1 <= self.max_model_len:
            return request, prompt_tokens
        fitted = drop_oldest(request.messages, lambda kept: (kept, _count_tokens(kept)),
                             lambda counted: counted[1] + 1 <= self.max_model_len
                             ) if request.truncate else None
        if fitted is None:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.max_model_len} tokens; "
                f"your input has {prompt_tokens}.",
                param="input",
            )
        (kept, prompt_tokens), _ = fitted
        return dataclasses.replace(request, messages=tuple(kept)), prompt_tokens

    def _parsing(self, request: EngineRequest) -> TurnParsing | None:
        splitter = calls = None
        if self.reasoning is not None:
            splitter = self.reasoning.splitter(thinking=thinking_flag(request.reasoning_effort))
        if self.tool_calls is not None and request.parse_tool_calls:
            calls = self.tool_calls.stream(request.tools)
        return None if splitter is None and calls is None else TurnParsing(splitter, calls)

    async def count_tokens(self, request: EngineRequest) -> int:
        def count() -> int:
            try:
                return self._fit(request)[1]
            except ContextLengthExceeded:
                return _count_tokens(request.messages)

        # A long prompt is counted in a worker thread, as the vLLM bridge renders and
        # counts every prompt (the loop stays free meanwhile).
        if len(request.messages) < _COUNT_THREAD_MIN_MESSAGES:
            await trio.lowlevel.checkpoint()
            return count()
        return await trio.to_thread.run_sync(count, limiter=_COUNT_THREADS)

    def running_ids(self) -> list[str]:
        """The ids of the requests running now (for tests)."""
        return sorted(self._running)

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(
            running=len(self._running),
            submitted_total=len(self.requests),
            aborted_total=len(self.aborted),
            healthy=self.alive,
        )
