"""Function calls inside a run: the plan, parsing the model's text, the tool-output wait.

:class:`ToolPlan` is decided once per request (:func:`plan_tools`): how calls come out
of the model (our built-in format, one forced JSON call, or the engine's own parser),
from the request's ``tool_choice`` and what the engine does with tools. The first
turn's engine request, the turns after tool outputs and :class:`ToolTurns` follow it.

:class:`ToolTurns` sits between the engine's text and the event builder when the model
is offered tools: plain text goes on as output text, each complete call becomes a
``function_call`` item (with its own ``call_id``; a namespaced function's with its
``namespace``), or a ``custom_tool_call`` item for a custom tool, up to ``max_tool_calls``
in all and one per turn unless ``parallel_tool_calls``. The model calls tools by the
names they were offered under (:mod:`trio_responses.protocol.tooldefs`).

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

from ..engine.base import Engine, EngineRequest, EngineStream, Grammar, ToolCallDelta
from ..engine.grammars import GrammarError, check_grammar
from ..errors import Conflict, InvalidRequest
from ..protocol.conversation import items_to_messages
from ..protocol.events import Emitted, ResponseEvents
from ..protocol.ids import IdFactory
from ..protocol.request import CreateResponseRequest
from ..protocol.toolcalls import ParsedCall, ToolCallParser, call_schema, tool_instructions
from ..protocol.tooldefs import (
    OfferedTool,
    custom_arguments,
    custom_input,
    forced_tool,
    offered_tools,
)

log = logging.getLogger(__name__)


# The next model turn: given this turn's calls and their outputs, a new engine stream.
NextTurn = Callable[[list[dict[str, Any]]], Awaitable[EngineStream]]


# How calls come out of the model: our built-in format ("tags"), one forced JSON call
# ("json"), parsed by the engine's own tool parser ("engine": EngineDelta.tool_calls), or
# the whole output as the input of a forced custom tool, constrained by its grammar
# ("grammar").
ToolMode = Literal["tags", "json", "engine", "grammar"]
# The modes of a forced first turn; the turns after it answer freely.
FORCED_MODES = ("json", "grammar")


@dataclass(frozen=True)
class ToolPlan:
    """How a response's function calls work, decided once per request (:func:`plan_tools`,
    from the request and what the engine does with tools): the first turn's engine
    request (:meth:`first_turn`), the later turns and :class:`ToolTurns` all follow it."""

    # How calls come out of the first turn.
    mode: ToolMode
    # How calls come out of the turns the model answers freely (after a forced call).
    free_mode: ToolMode = "tags"
    max_calls: int | None = None
    parallel: bool = True
    # The tools the model is offered (hosted tools are not).
    offered: tuple[OfferedTool, ...] = ()
    # The structured-output schema of a forced call (mode "json").
    call_schema: Mapping[str, Any] | None = None
    # The engine's chat template writes the tools it is given into the prompt.
    template_lists_tools: bool = False
    # The forced custom tool whose grammar the whole output follows (mode "grammar").
    grammar_tool: OfferedTool | None = None

    @property
    def grammar(self) -> Grammar | None:
        tool = self.grammar_tool
        if tool is None or tool.grammar is None:
            return None
        syntax, definition = tool.grammar
        return Grammar("regex" if syntax == "regex" else "lark", definition)

    @property
    def tools(self) -> tuple[Mapping[str, Any], ...]:
        """The offered tools in the chat-completions form chat templates take."""
        return tuple(tool.chat for tool in self.offered)

    def resolve(self, model_name: str) -> OfferedTool | None:
        """The offered tool the model calls ``model_name``; None for a name it made up."""
        return next((tool for tool in self.offered if tool.model_name == model_name), None)

    def teaches(self, mode: ToolMode) -> bool:
        """Whether a turn in ``mode`` needs the built-in format taught in the prompt:
        our parser reads our format; the engine's parser gets the tools from the model's
        template, or from our instructions when the template cannot list them (their
        Hermes format is what the hermes parser reads); a forced call needs none."""
        return mode == "tags" or (mode == "engine" and not self.template_lists_tools)

    def first_turn(self, request: EngineRequest) -> EngineRequest:
        """``request`` (built without tools) as the first turn of this plan: with the
        tools, and either a forced call's schema or the format taught if need be."""
        messages: Sequence[Mapping[str, Any]] = request.messages
        sampling = request.sampling
        if self.mode == "json":
            sampling = dataclasses.replace(sampling, json_object=False,
                                           json_schema=self.call_schema)
        elif self.mode == "grammar" and self.grammar_tool is not None:
            sampling = dataclasses.replace(sampling, json_object=False, json_schema=None,
                                           grammar=self.grammar)
            messages = with_instructions(messages, grammar_instructions(self.grammar_tool))
        elif self.teaches(self.mode):
            messages = with_tool_instructions(messages, self.tools)
        return dataclasses.replace(request, messages=tuple(messages), sampling=sampling,
                                   tools=self.tools, parse_tool_calls=self.mode == "engine")


def plan_tools(request: CreateResponseRequest, engine: Engine) -> ToolPlan | None:
    """The tool plan of ``request`` on ``engine``, or None when no tools are in play (none
    the model can call, or ``tool_choice`` ``none``)."""
    offered = offered_tools(request.tools or ())
    check_grammars(request.tools or ())
    if not offered or request.tool_choice == "none":
        return None
    free_mode: ToolMode = "engine" if engine.parses_tool_calls else "tags"
    forced = request.tool_choice == "required" or isinstance(request.tool_choice, dict)
    named = forced_tool(request.tool_choice, request.tools or ())
    if named is not None and named.grammar is not None:
        return ToolPlan(mode="grammar", free_mode=free_mode, max_calls=request.max_tool_calls,
                        offered=offered, grammar_tool=named,
                        template_lists_tools=engine.renders_tools)
    chat = tuple(tool.chat for tool in offered)
    return ToolPlan(
        mode="json" if forced else free_mode, free_mode=free_mode,
        max_calls=request.max_tool_calls, parallel=request.parallel_tool_calls is not False,
        offered=offered,
        call_schema=call_schema(chat, named.model_name if named else None) if forced else None,
        template_lists_tools=engine.renders_tools)


@dataclass(frozen=True)
class ToolWait:
    """The opt-in wait after a turn that made calls: for how long, and the turn after."""

    timeout: float
    next_turn: NextTurn


class ToolTurns:
    def __init__(self, plan: ToolPlan, builder: ResponseEvents, ids: IdFactory, *,
                 wait: ToolWait | None = None) -> None:
        self._plan = plan
        self._wait = wait
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
        # Whitespace that may only separate calls: after the open call (engine mode,
        # see text()), or before and between calls (our parser's pieces, see _emit()).
        self._held_space = ""
        # This turn's last output was text; this turn has made a message or a call.
        self._text_open = False
        self._turn_output = False
        self._outputs: dict[str, str] = {}
        self._waiting = False
        self._all_posted = trio.Event()

    # -- parsing ---------------------------------------------------------------------

    def text(self, text: str) -> list[Emitted]:
        if self._mode == "grammar":
            return self._grammar_input(text)
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
                    opened = self._new_call(piece.name, "")
                    events += self._close_open_call()
                    if not opened["custom"]:
                        # A custom tool's item is sent whole when the call ends: its input
                        # is a string inside the arguments' JSON.
                        events += self._builder.function_call(
                            call_id=opened["call_id"], name=opened["name"],
                            namespace=opened["namespace"])
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
            if not call["custom"]:
                events += self._builder.function_call(call_id=call["call_id"],
                                                      name=call["name"],
                                                      arguments=piece.arguments)
        return events

    def _grammar_input(self, text: str) -> list[Emitted]:
        """The forced custom tool's input, streamed as the model writes it."""
        tool = self._plan.grammar_tool
        assert tool is not None, "grammar mode without its tool"
        call = self._open_call
        if call is None:
            if not self._may_call():
                return []
            call = self._open_call = self._new_call(tool.model_name, custom_arguments(""))
            call["input"] = ""
        call["input"] += text
        call["arguments"] = custom_arguments(call["input"])
        return self._builder.custom_tool_input(call_id=call["call_id"], name=call["name"],
                                               namespace=call["namespace"], delta=text)

    @property
    def mid_call(self) -> bool:
        """Whether a call is unfinished (open, or being parsed): no place to stop."""
        return self._open_call is not None or self._parser.holding

    def end_of_turn(self) -> list[Emitted]:
        if self._mode == "grammar":
            if self._open_call is None and self._may_call():
                self._grammar_input("")  # an empty input is still the call
            self._open_call = None
            return self._builder.end_items()
        events = self._emit(self._parser.flush())
        if self._held_space and not self._turn_output and self._mode != "engine":
            events += self._builder.text(self._held_space)  # a reply of whitespace alone
        self._parser = ToolCallParser(_parser_mode(self._mode))
        self._engine_calls = {}
        self._held_space = ""
        self._text_open = self._turn_output = False
        return events + self._close_open_call()

    def _close_open_call(self) -> list[Emitted]:
        """The engine call whose item is open takes no more arguments; one that got
        none still gets valid JSON. A custom tool's call is sent now, whole."""
        call, self._open_call = self._open_call, None
        if call is None:
            return []
        if call["custom"]:
            return self._call_events(call)
        if call["arguments"]:
            return []
        call["arguments"] = "{}"
        return self._builder.function_call(call_id=call["call_id"], name=call["name"],
                                           arguments="{}")

    def _emit(self, pieces: Sequence[str | ParsedCall]) -> list[Emitted]:
        """Our parser's pieces as items. Whitespace before a call or between calls (the
        line ends of their markup) is no message of its own: it waits until text
        follows it, and goes if a call or the turn's end does."""
        events: list[Emitted] = []
        for piece in pieces:
            if isinstance(piece, str):
                if not self._text_open and not piece.strip():
                    self._held_space += piece
                    continue
                piece, self._held_space = self._held_space + piece, ""
                events += self._builder.text(piece)
                self._text_open = self._turn_output = True
            elif self._may_call():
                self._held_space = ""
                self._text_open, self._turn_output = False, True
                events += self._call_events(self._new_call(piece.name, piece.arguments))
        return events

    def _new_call(self, model_name: str, arguments: str) -> dict[str, Any]:
        """A call of this turn, of the tool the model calls ``model_name``: its own name
        and namespace, and whether it is a custom tool."""
        tool = self._plan.resolve(model_name)
        call = {"call_id": self._ids("call"), "name": tool.name if tool else model_name,
                "namespace": tool.namespace if tool else None,
                "custom": tool is not None and tool.kind == "custom", "arguments": arguments}
        self._total_calls += 1
        self.turn_calls.append(call)
        return call

    def _call_events(self, call: Mapping[str, Any]) -> list[Emitted]:
        """The item of a whole call (its arguments known)."""
        if call["custom"]:
            return self._builder.custom_tool_call(
                call_id=call["call_id"], name=call["name"], namespace=call["namespace"],
                input_text=custom_input(call["arguments"]))
        return self._builder.function_call(call_id=call["call_id"], name=call["name"],
                                           arguments=call["arguments"],
                                           namespace=call["namespace"])

    def _may_call(self) -> bool:
        if self._plan.max_calls is not None and self._total_calls >= self._plan.max_calls:
            return False
        return self._plan.parallel or not self.turn_calls

    # -- the wait --------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return self._waiting

    def wants_next_turn(self, incomplete_reason: str | None) -> bool:
        """Whether the run should wait for this turn's outputs and go on: the wait is on,
        the turn made calls, and it ended with a stop (not cut short)."""
        return self._wait is not None and bool(self.turn_calls) and incomplete_reason is None

    async def wait_for_outputs(self) -> list[dict[str, Any]] | None:
        """Outputs for every call of this turn, or None after the timeout."""
        assert self._wait is not None, "a response that does not wait for tool outputs"
        self._outputs = {}
        self._all_posted = trio.Event()
        self._waiting = True
        try:
            with trio.move_on_after(self._wait.timeout):
                await self._all_posted.wait()
        finally:
            self._waiting = False
        if not self._all_posted.is_set():
            return None
        turn = [dict(call, output=self._outputs[call["call_id"]]) for call in self.turn_calls]
        self.turn_calls = []
        if self._mode in FORCED_MODES:
            self._mode = self._plan.free_mode  # later turns answer freely
        self._parser = ToolCallParser(_parser_mode(self._mode))
        return turn

    def outputs_given(self, outputs: Sequence[Mapping[str, Any]]) -> list[Emitted]:
        """The output items of a turn's calls (from :meth:`wait_for_outputs`)."""
        events: list[Emitted] = []
        for call in outputs:
            events += self._builder.tool_output(call_id=call["call_id"],
                                                output=call["output"],
                                                custom=bool(call.get("custom")))
        return events

    async def next_turn(self, outputs: list[dict[str, Any]]) -> EngineStream:
        """The engine stream of the turn after ``outputs`` (from :meth:`wait_for_outputs`)."""
        assert self._wait is not None, "a response that does not wait for tool outputs"
        return await self._wait.next_turn(outputs)

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


def tool_turns(plan: ToolPlan, first: EngineRequest, builder: ResponseEvents,
               ids: IdFactory, *, engine: Engine, wait: bool, timeout: float) -> ToolTurns:
    """The function calls of a response whose first turn is ``first``; with ``wait``,
    the turns after tool outputs go to ``engine``."""
    return ToolTurns(plan, builder, ids, wait=ToolWait(
        timeout, later_turns(plan, first, engine)) if wait else None)


def later_turns(plan: ToolPlan, first: EngineRequest, engine: Engine) -> NextTurn:
    """The turns after the first: its prompt, then each turn's calls and outputs, and
    the model answers freely (a forced call again would never end)."""
    messages: list[Mapping[str, Any]] = list(first.messages)
    if plan.mode in FORCED_MODES and plan.teaches(plan.free_mode):
        # Later turns answer in the format the forced first turn did not need.
        messages = with_tool_instructions(messages, plan.tools)
    turns = 0

    async def next_turn(calls: list[dict[str, Any]]) -> EngineStream:
        nonlocal turns
        turns += 1
        messages.extend(items_to_messages(_turn_items(calls)))
        follow = dataclasses.replace(
            first, request_id=f"{first.request_id}_turn{turns}", messages=tuple(messages),
            sampling=dataclasses.replace(first.sampling, json_schema=None, grammar=None),
            parse_tool_calls=plan.free_mode == "engine")
        return await engine.submit(follow)

    return next_turn


def _parser_mode(mode: ToolMode) -> Literal["tags", "json"]:
    return "json" if mode == "json" else "tags"


def with_tool_instructions(messages: Sequence[Mapping[str, Any]],
                           tools: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The built-in tool format taught in the system message (for templates without
    tool support)."""
    return with_instructions(messages, tool_instructions(tools))


def grammar_instructions(tool: OfferedTool) -> str:
    """What the model is told when its whole reply is a forced custom tool's input."""
    description = tool.chat.get("function", {}).get("description")
    about = f" ({description})" if description else ""
    return (f"Call the tool {tool.model_name}{about} now: reply with its input only, "
            "in the format it requires, and nothing else.")


def check_grammars(tools: Sequence[Mapping[str, Any]]) -> None:
    """Compile every custom tool's grammar: a bad one is a 400 naming it."""
    for index, tool in enumerate(tools):
        members = tool.get("tools") or () if tool.get("type") == "namespace" else (tool,)
        for inner, member in enumerate(members):
            fmt = member.get("format") if member.get("type") == "custom" else None
            if not isinstance(fmt, Mapping) or fmt.get("type") != "grammar":
                continue
            where = f"tools[{index}]" + (f".tools[{inner}]" if member is not tool else "")
            grammar = Grammar("regex" if fmt["syntax"] == "regex" else "lark",
                              str(fmt["definition"]))
            try:
                check_grammar(grammar)
            except GrammarError as exc:
                raise InvalidRequest(
                    f"Invalid {fmt['syntax']} grammar in '{where}.format.definition': {exc}",
                    param=f"{where}.format.definition", code="invalid_grammar") from exc


def with_instructions(messages: Sequence[Mapping[str, Any]],
                      guide: str) -> list[Mapping[str, Any]]:
    """``guide`` at the end of the system message (a system message of its own if none)."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{guide}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": guide}, *messages]


def _turn_items(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A turn's calls and their outputs as the items a response holds."""
    return [*map(_call_item, calls),
            *({"type": "custom_tool_call_output" if c.get("custom") else
               "function_call_output", "call_id": c["call_id"], "output": c["output"]}
              for c in calls)]


def _call_item(call: Mapping[str, Any]) -> dict[str, Any]:
    item = {"call_id": call["call_id"], "name": call["name"]}
    if call.get("namespace"):
        item["namespace"] = call["namespace"]
    if call.get("custom"):
        return {"type": "custom_tool_call", **item, "input": custom_input(call["arguments"])}
    return {"type": "function_call", **item, "arguments": call["arguments"]}
