"""The engine protocol: what the runtime needs from any text-generation engine.

Submit a prepared request, iterate its deltas, abort. The vLLM bridge and the scripted
engine both implement it; so can a user's own object (``create_app(engine=...)``).

An engine owns prompt rendering (the chat template needs its tokenizer), so a request
carries chat messages, not a prompt string.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Grammar:
    """Structured output by a grammar: a Lark grammar or a regular expression the whole
    output must match (a forced custom tool's ``format``)."""

    syntax: Literal["lark", "regex"]
    definition: str


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Sampling for one request. ``None`` means the engine's (or model's) default."""

    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    # None: no logprobs at all; 0: the chosen token's logprob only; n: plus n alternatives.
    top_logprobs: int | None = None
    # vLLM extensions, accepted outside compatibility mode.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    # Structured output: a JSON schema, or any JSON object.
    json_schema: Mapping[str, Any] | None = None
    json_object: bool = False
    grammar: Grammar | None = None


@dataclass(frozen=True, slots=True)
class EngineRequest:
    request_id: str
    # OpenAI chat-format messages ({"role", "content", ...}) in prompt order; the engine
    # renders them with its chat template.
    messages: tuple[Mapping[str, Any], ...]
    sampling: SamplingOptions
    # Function tools in chat-completions form, for templates that support them.
    tools: tuple[Mapping[str, Any], ...] = ()
    cache_salt: str | None = None
    # Lower runs first (vLLM's convention).
    priority: int = 0
    # When the prompt is too long: drop the oldest non-system messages until it fits
    # (truncation="auto"), instead of raising ContextLengthExceeded.
    truncate: bool = False
    # The request's reasoning effort ("none" ... "xhigh"), or None when it did not ask.
    # Chat templates get it (and enable_thinking), as vLLM's own server passes them.
    reasoning_effort: str | None = None
    # Parse tool calls with the engine's own tool parser (--tool-call-parser) and send
    # them as EngineDelta.tool_calls; only when the engine says it can (parses_tool_calls).
    parse_tool_calls: bool = False


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the ``index``-th tool call of a turn: its name first, then argument
    text (JSON, in fragments that join)."""

    index: int
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class EngineDelta:
    """New output since the previous delta of the same request.

    Token counts are totals so far, not increments, so a consumer that merges or drops
    deltas never miscounts.
    """

    text: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    # Reasoning text, when the engine separates it from the answer (a reasoning parser),
    # and how many of output_tokens were reasoning.
    reasoning: str = ""
    reasoning_tokens: int = 0
    # Tool calls the engine's tool parser found (EngineRequest.parse_tool_calls).
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    running: int
    submitted_total: int
    aborted_total: int
    healthy: bool
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class EngineStream(Protocol):
    """The deltas of one request. Iterate until a delta has a ``finish_reason``.

    Iteration raises :class:`trio_responses.errors.EngineError` if the engine fails the
    request or dies. ``aclose`` aborts the request unless it finished; it is idempotent
    and safe to call from a cancelled scope (callers shield it).

    A stream may also have a synchronous ``abort() -> bool``: what ``aclose`` does,
    without waiting, True if that call aborted the request. The runtime calls it the
    moment a response ends (a disconnect, ``/cancel``), so that in a burst of ends every
    abort reaches the engine in the pass that saw it, not after every run's task has had
    its turn; ``aclose`` follows as before.
    """

    def __aiter__(self) -> AsyncIterator[EngineDelta]: ...

    async def aclose(self) -> None: ...


# A reader's offer to take a delta where the engine hands it over (see ListenedStream):
# True if it took it.
DeltaListener = Callable[[EngineDelta], bool]


@runtime_checkable
class ListenedStream(Protocol):
    """An engine stream that can hand a delta to its reader without waking it.

    An engine whose deltas come from a task or callback of its own (a step of all its
    streams: the scripted engine's step pacing) may, while the reader waits in
    ``__anext__`` with nothing pending, first offer a new delta to the reader's listener,
    synchronously, in the task that hands it over. If the listener returns True the
    delta is the reader's (it has done what it would have done with it) and is not
    returned by ``__anext__``; if False, it is queued and the reader woken as usual.
    Deltas are offered in order and never while an earlier one is pending, so the reader
    sees each delta once, in order, by one path or the other.
    """

    def listen(self, listener: DeltaListener | None) -> None: ...


@runtime_checkable
class Engine(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def parses_tool_calls(self) -> bool:
        """Whether it parses tool calls itself when a request asks it to
        (``EngineRequest.parse_tool_calls``, sent back as ``EngineDelta.tool_calls``);
        otherwise the runtime parses the model's text."""

    @property
    def renders_tools(self) -> bool:
        """Whether its chat template writes ``EngineRequest.tools`` into the prompt;
        otherwise the runtime teaches the model its built-in call format."""

    @property
    def max_model_len(self) -> int:
        """The model's context in tokens, prompt and output together (0 while unknown,
        before start): no request generates more than the room its prompt leaves."""

    @property
    def sampling_defaults(self) -> Mapping[str, float]:
        """What a request gets for the sampling fields it leaves unset, where the model
        says (its ``generation_config.json``: ``temperature``, ``top_p``,
        ``presence_penalty``, ``frequency_penalty`` …, and ``max_tokens``, its
        ``max_new_tokens``: the output limit of a request without max_output_tokens); a
        field not here gets the usual default (temperature and top_p 1, penalties 0,
        4096 tokens). Known once started; the response object reports the sampling that
        was used."""

    async def start(self) -> None:
        """Bring the engine up; called once, in the app's lifespan, before serving."""

    async def aclose(self) -> None:
        """Abort whatever is running and stop; live streams raise EngineError."""

    async def submit(self, request: EngineRequest) -> EngineStream:
        """Start generating. Raises ContextLengthExceeded or EngineUnavailable."""

    async def count_tokens(self, request: EngineRequest) -> int:
        """The prompt length of ``request`` in tokens, with the same template, no generation."""

    def statistics(self) -> EngineStatistics: ...
