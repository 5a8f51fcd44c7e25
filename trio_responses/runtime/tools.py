"""Function calls inside a run: parsing the model's text, and the tool-output wait.

:class:`ToolTurns` sits between the engine's text and the event builder when a request
has function tools: plain text goes on as output text, each complete call becomes a
``function_call`` item (with its own ``call_id``), up to ``max_tool_calls`` in all and
one per turn unless ``parallel_tool_calls``.

The wait is opt-in (``X-Responses-Tool-Wait: true`` on the create request; a header, so
it also works in compatibility mode). After a turn that made calls, the run waits —
heartbeats going on — until every call of the turn has an output posted to
``POST /v1/responses/{id}/tool_outputs``, or the tool timeout passes. The outputs are
checked when they are posted: an unknown or repeated ``call_id``, or a response that
is not waiting, is refused with a 4xx and the waiting run is left as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import trio

from ..engine.base import Engine, EngineRequest, EngineStream, ToolCallDelta
from ..errors import Conflict, InvalidRequest
from ..protocol.events import Emitted, ResponseEvents
from ..protocol.ids import IdFactory
from ..protocol.request import CreateResponseRequest
from ..protocol.toolcalls import ParsedCall, ToolCallParser, tool_instructions

log = logging.getLogger(__name__)


# The next model turn: given this turn's calls and their outputs, a new engine stream.
NextTurn = Callable[[list[dict[str, Any]]], Awaitable[EngineStream]]


# How calls come out of the model: our built-in format ("tags"), one forced JSON call
# ("json"), or parsed by the engine's own tool parser ("engine": EngineDelta.tool_calls).
ToolMode = Literal["tags", "json", "engine"]


@dataclass(frozen=True)
class ToolPlan:
    mode: ToolMode
    max_calls: int | None
    parallel: bool
    wait: bool
    timeout: float
    next_turn: NextTurn | None = None
    # How calls come out of the turns after a forced call.
    free_mode: ToolMode = "tags"


class ToolTurns:
    def __init__(self, plan: ToolPlan, builder: ResponseEvents, ids: IdFactory) -> None:
        self.plan = plan
        self._builder = builder
        self._ids = ids
        self._mode: ToolMode = plan.mode
        self._parser = ToolCallParser(_parser_mode(plan.mode))
        self._total_calls = 0
        self.turn_calls: list[dict[str, Any]] = []
        # The engine's calls of this turn by their index; None: over the call limits.
        self._engine_calls: dict[int, dict[str, Any] | None] = {}
        # The engine call whose item is open: only it can take more arguments.
        self._open_call: dict[str, Any] | None = None
        self._held_space = ""  # whitespace after the open call (see text())
        self._outputs: dict[str, str] = {}
        self._waiting = False
        self._all_posted = trio.Event()

    # -- parsing ---------------------------------------------------------------------

    def text(self, text: str) -> list[Emitted]:
        if self._mode == "engine":
            if self._open_call is not None and not text.strip():
                # Whitespace after a call (its markup's line end) waits: more arguments
                # may follow, and text would close the call's item.
                self._held_space += text
                return []
            text, self._held_space = self._held_space + text, ""
            # The builder closes the open call's item for the text.
            return self._close_open_call() + self._builder.text(text)
        return self._emit(self._parser.feed(text))

    def engine_calls(self, calls: Sequence[ToolCallDelta]) -> list[Emitted]:
        """Calls the engine's tool parser found: a name opens a call, argument text
        streams into it."""
        events: list[Emitted] = []
        self._held_space = ""  # between calls or inside one: no message of its own
        for piece in calls:
            if piece.index not in self._engine_calls:
                if piece.name is None:
                    continue  # arguments before the name: the parser's mistake
                opened: dict[str, Any] | None = None
                if self._may_call():
                    opened = {"call_id": self._ids("call"), "name": piece.name,
                              "arguments": ""}
                    self._total_calls += 1
                    self.turn_calls.append(opened)
                    events += self._close_open_call()
                    events += self._builder.function_call(call_id=opened["call_id"],
                                                          name=piece.name)
                    self._open_call = opened
                self._engine_calls[piece.index] = opened
            call = self._engine_calls[piece.index]
            if call is None or not piece.arguments:
                continue
            if call is not self._open_call:
                # Its item is done and sent; a parser that streams an earlier call late
                # would otherwise make two items of one call.
                log.warning("dropped late arguments of call %s", call["call_id"])
                continue
            call["arguments"] += piece.arguments
            events += self._builder.function_call(call_id=call["call_id"], name=call["name"],
                                                  arguments=piece.arguments)
        return events

    def end_of_turn(self) -> list[Emitted]:
        events = self._emit(self._parser.flush())
        self._parser = ToolCallParser(_parser_mode(self._mode))
        self._engine_calls = {}
        self._held_space = ""
        return events + self._close_open_call()

    def _close_open_call(self) -> list[Emitted]:
        """The engine call whose item is open takes no more arguments; one that got
        none still gets valid JSON."""
        call, self._open_call = self._open_call, None
        if call is None or call["arguments"]:
            return []
        call["arguments"] = "{}"
        return self._builder.function_call(call_id=call["call_id"], name=call["name"],
                                           arguments="{}")

    def _emit(self, pieces: Sequence[str | ParsedCall]) -> list[Emitted]:
        events: list[Emitted] = []
        for piece in pieces:
            if isinstance(piece, str):
                if piece:
                    events += self._builder.text(piece)
            elif self._may_call():
                call_id = self._ids("call")
                self._total_calls += 1
                self.turn_calls.append({"call_id": call_id, "name": piece.name,
                                        "arguments": piece.arguments})
                events += self._builder.function_call(call_id=call_id, name=piece.name,
                                                      arguments=piece.arguments)
        return events

    def _may_call(self) -> bool:
        if self.plan.max_calls is not None and self._total_calls >= self.plan.max_calls:
            return False
        return self.plan.parallel or not self.turn_calls

    # -- the wait --------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return self._waiting

    async def wait_for_outputs(self) -> list[dict[str, Any]] | None:
        """Outputs for every call of this turn, or None after the timeout."""
        self._outputs = {}
        self._all_posted = trio.Event()
        self._waiting = True
        try:
            with trio.move_on_after(self.plan.timeout):
                await self._all_posted.wait()
        finally:
            self._waiting = False
        if not self._all_posted.is_set():
            return None
        turn = [dict(call, output=self._outputs[call["call_id"]]) for call in self.turn_calls]
        self.turn_calls = []
        if self._mode == "json":
            self._mode = self.plan.free_mode  # later turns answer freely
        self._parser = ToolCallParser(_parser_mode(self._mode))
        return turn

    def post(self, outputs: Sequence[Mapping[str, Any]]) -> None:
        """Accept posted outputs, all or none; raises a 4xx error for bad ones."""
        if not self._waiting:
            raise Conflict("This response is not waiting for tool outputs.",
                           param="tool_outputs", code="not_waiting_for_tool_outputs")
        pending = {call["call_id"] for call in self.turn_calls}
        seen: set[str] = set()
        for index, output in enumerate(outputs):
            call_id = output.get("call_id")
            param = f"tool_outputs[{index}].call_id"
            if call_id not in pending:
                raise InvalidRequest(f"No pending function call has call_id {call_id!r}.",
                                     param=param, code="unknown_call_id")
            if call_id in self._outputs or call_id in seen:
                raise InvalidRequest(f"An output for call_id {call_id!r} was already given.",
                                     param=param, code="duplicate_call_id")
            seen.add(str(call_id))
        for output in outputs:
            self._outputs[str(output["call_id"])] = str(output["output"])
        if pending <= self._outputs.keys():
            self._all_posted.set()


@dataclass(frozen=True)
class EngineTools:
    """What an engine does with function tools itself."""

    # It parses tool calls (the vLLM bridge with --tool-call-parser
    # --enable-auto-tool-choice): EngineRequest.parse_tool_calls.
    parses: bool = False
    # Its chat template writes the tools it is given into the prompt.
    renders: bool = False

    @classmethod
    def of(cls, engine: Engine) -> EngineTools:
        return cls(parses=engine.parses_tool_calls, renders=engine.renders_tools)

    @property
    def free_mode(self) -> ToolMode:
        """How calls come out of a turn the model answers freely."""
        return "engine" if self.parses else "tags"

    def mode(self, request: CreateResponseRequest) -> ToolMode | None:
        """How calls come out of the first turn: None (no tools in play), forced JSON,
        or free text."""
        if not request.tools or request.tool_choice == "none":
            return None
        if request.tool_choice == "required" or isinstance(request.tool_choice, dict):
            return "json"
        return self.free_mode

    def needs_instructions(self, mode: ToolMode) -> bool:
        """Whether a turn in ``mode`` needs the built-in format taught in the prompt:
        our parser reads our format; the engine's parser gets the tools from the model's
        template, or from our instructions when the template cannot list them (their
        Hermes format is what the hermes parser reads); a forced call needs none."""
        return mode == "tags" or (mode == "engine" and not self.renders)


def tool_turns(request: CreateResponseRequest, first: EngineRequest, builder: ResponseEvents,
               ids: IdFactory, *, engine: Engine, wait: bool, timeout: float
               ) -> ToolTurns | None:
    """The function calls of a response whose first turn is ``first``, or None when it
    has no tools in play. Later turns (after tool outputs) go to ``engine``."""
    support = EngineTools.of(engine)
    mode = support.mode(request)
    if mode is None:
        return None
    messages: list[Mapping[str, Any]] = list(first.messages)
    if mode == "json" and support.needs_instructions(support.free_mode):
        # Later turns answer freely, in the format the forced first turn did not need.
        messages = [*with_tool_instructions([dict(m) for m in messages], first.tools)]
    turns = 0

    async def next_turn(calls: list[dict[str, Any]]) -> EngineStream:
        # Later turns answer freely (a forced call again would never end).
        nonlocal turns
        turns += 1
        messages.extend(turn_messages(calls))
        follow = dataclasses.replace(
            first, request_id=f"{first.request_id}_turn{turns}", messages=tuple(messages),
            sampling=dataclasses.replace(first.sampling, json_schema=None),
            parse_tool_calls=support.free_mode == "engine")
        return await engine.submit(follow)

    plan = ToolPlan(mode=mode, max_calls=request.max_tool_calls,
                    parallel=request.parallel_tool_calls is not False, wait=wait,
                    timeout=timeout, next_turn=next_turn, free_mode=support.free_mode)
    return ToolTurns(plan, builder, ids)


def _parser_mode(mode: ToolMode) -> Literal["tags", "json"]:
    return "json" if mode == "json" else "tags"


def chat_tools(request: CreateResponseRequest) -> tuple[dict[str, Any], ...]:
    """The request's tools in the chat-completions form chat templates take."""
    return tuple(
        {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
        for tool in request.tools or ())


def with_tool_instructions(messages: list[dict[str, Any]],
                           tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The built-in tool format taught in the system message (for templates without
    tool support)."""
    guide = tool_instructions(tools)
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{guide}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": guide}, *messages]


def turn_messages(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A turn's calls and their outputs, as the chat messages of the next prompt."""
    assistant = {"role": "assistant", "content": "", "tool_calls": [
        {"id": c["call_id"], "type": "function",
         "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]}
    return [assistant, *({"role": "tool", "tool_call_id": c["call_id"],
                          "content": c["output"]} for c in calls)]
