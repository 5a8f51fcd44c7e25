"""ToolTurns over calls an engine's own tool parser found (``EngineDelta.tool_calls``):
items and argument deltas, the call limits, and the parser mistakes it must survive; and
over our own parser's calls (the built-in format), the whitespace between them.
Sans-io: the event builder only, every event checked by its validator."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing

from tests.protocol.builders import USAGE, new_builder
from trio_responses.engine.base import EngineStream, ToolCallDelta
from trio_responses.protocol.events import ResponseEvents
from trio_responses.protocol.ids import counting_ids
from trio_responses.protocol.tooldefs import offered_tools
from trio_responses.runtime.tools import ToolPlan, ToolTurns, ToolWait


def turns(*, parallel: bool = True, max_calls: int | None = None
          ) -> tuple[ToolTurns, ResponseEvents]:
    builder = new_builder()
    builder.created()
    builder.in_progress()
    plan = ToolPlan(mode="engine", max_calls=max_calls, parallel=parallel)
    return ToolTurns(plan, builder, counting_ids()), builder


async def no_next_turn(calls: list[dict[str, Any]]) -> EngineStream:
    raise AssertionError("these tests never start a next turn")


def finish(tools: ToolTurns, builder: ResponseEvents) -> dict[str, Any]:
    tools.end_of_turn()
    builder.complete(usage=USAGE, at=1700000001.0)
    return builder.response


def calls_of(response: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(item["name"], json.loads(item["arguments"])) for item in response["output"]
            if item["type"] == "function_call"]


def test_text_then_calls_with_streamed_arguments() -> None:
    tools, builder = turns()
    events = tools.text("Checking. ")
    events += tools.engine_calls([ToolCallDelta(0, "get_weather"),
                                  ToolCallDelta(0, arguments='{"city": '),
                                  ToolCallDelta(0, arguments='"Paris"}'),
                                  ToolCallDelta(1, "get_time", '{"zone": "CET"}')])
    response = finish(tools, builder)
    assert [item["type"] for item in response["output"]] == [
        "message", "function_call", "function_call"]
    assert calls_of(response) == [("get_weather", {"city": "Paris"}),
                                  ("get_time", {"zone": "CET"})]
    deltas = [e["delta"] for e, _ in events
              if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"city": ', '"Paris"}', '{"zone": "CET"}']
    assert [c["name"] for c in tools.turn_calls] == ["get_weather", "get_time"]


def test_limits_drop_later_calls_and_their_arguments() -> None:
    for tools, builder in (turns(parallel=False), turns(max_calls=1)):
        tools.engine_calls([ToolCallDelta(0, "a", "{}"), ToolCallDelta(1, "b"),
                            ToolCallDelta(1, arguments='{"x": 1}')])
        assert calls_of(finish(tools, builder)) == [("a", {})]


def test_a_call_without_arguments_gets_an_empty_object() -> None:
    tools, builder = turns()
    tools.engine_calls([ToolCallDelta(0, "ping")])
    assert calls_of(finish(tools, builder)) == [("ping", {})]
    assert tools.turn_calls[0]["arguments"] == "{}"


def test_parser_mistakes_never_make_a_second_item_for_one_call() -> None:
    tools, builder = turns()
    tools.engine_calls([ToolCallDelta(0, arguments="{}"),   # arguments before any name
                        ToolCallDelta(0, "a", '{"k": 1}'), ToolCallDelta(1, "b", "{}"),
                        ToolCallDelta(0, arguments=" ")])    # late, after call 1 opened
    response = finish(tools, builder)
    assert calls_of(response) == [("a", {"k": 1}), ("b", {})]
    assert len({item["call_id"] for item in response["output"]}) == 2


def test_every_call_without_arguments_gets_an_empty_object() -> None:
    # Closed by the next call, and by text, as well as by the end of the turn.
    tools, builder = turns()
    tools.engine_calls([ToolCallDelta(0, "a"), ToolCallDelta(1, "b")])
    tools.text("and then")
    tools.engine_calls([ToolCallDelta(2, "c")])
    response = finish(tools, builder)
    assert calls_of(response) == [("a", {}), ("b", {}), ("c", {})]
    assert [c["arguments"] for c in tools.turn_calls] == ["{}", "{}", "{}"]


async def test_after_a_forced_call_the_engine_parses_the_next_turns() -> None:
    builder = new_builder()
    builder.created()
    builder.in_progress()
    plan = ToolPlan(mode="json", max_calls=None, parallel=True, free_mode="engine")
    tools = ToolTurns(plan, builder, counting_ids(),
                      wait=ToolWait(timeout=5.0, next_turn=no_next_turn))
    tools.text('{"name": "a", "arguments": {}}')
    tools.end_of_turn()
    [call] = tools.turn_calls
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tools.wait_for_outputs)
        await trio.testing.wait_all_tasks_blocked()
        tools.post([{"call_id": call["call_id"], "output": "done"}])
    # Free text now goes straight out (the engine's parser found the calls in it) ...
    events = tools.text('<tool_call>{"name": "a", "arguments": {}}</tool_call>')
    assert [e["type"] for e, _ in events][-1] == "response.output_text.delta"
    # ... and the engine's calls are taken.
    tools.engine_calls([ToolCallDelta(0, "a", "{}")])
    assert [c["name"] for c in tools.turn_calls] == ["a"]


def test_whitespace_after_a_call_does_not_close_it() -> None:
    tools, builder = turns()
    tools.engine_calls([ToolCallDelta(0, "a", '{"k":')])
    assert tools.text("\n") == []
    tools.engine_calls([ToolCallDelta(0, arguments=" 1}")])
    tools.text("\n")
    response = finish(tools, builder)
    # No message of whitespace, one item with all of its arguments.
    assert [item["type"] for item in response["output"]] == ["function_call"]
    assert calls_of(response) == [("a", {"k": 1})]


def test_text_after_a_call_keeps_the_whitespace_before_it() -> None:
    tools, builder = turns()
    tools.engine_calls([ToolCallDelta(0, "a", "{}")])
    tools.text("\n")
    tools.text("Done.")
    response = finish(tools, builder)
    assert [item["type"] for item in response["output"]] == ["function_call", "message"]
    assert response["output"][1]["content"][0]["text"] == "\nDone."


def test_namespaced_and_custom_calls_from_the_engine_parser() -> None:
    """The parser reports the names the model was offered: a namespaced function's call
    comes out under its own name with its namespace, and a custom tool's call (whose
    input is a string inside the arguments' JSON) as one whole custom_tool_call item."""
    builder = new_builder()
    builder.created()
    builder.in_progress()
    declared = [{"type": "namespace", "name": "agents", "description": "Sub-agents.",
                 "tools": [{"type": "function", "name": "spawn"},
                           {"type": "custom", "name": "note"}]},
                {"type": "custom", "name": "apply_patch"}]
    plan = ToolPlan(mode="engine", offered=offered_tools(declared))
    tools = ToolTurns(plan, builder, counting_ids())
    events = tools.engine_calls([ToolCallDelta(0, "agents__spawn", '{"task":'),
                                 ToolCallDelta(0, arguments=' "x"}'),
                                 ToolCallDelta(1, "apply_patch", '{"input": "*** Be'),
                                 ToolCallDelta(1, arguments='gin"}')])
    # The custom call is sent only when it ends: by a new call, text or the turn's end.
    assert [e["item"]["type"] for e, _ in events if e["type"] == "response.output_item.added"
            ] == ["function_call"]
    events += tools.engine_calls([ToolCallDelta(2, "agents__note", "{}")])
    events += tools.text("Done.")
    response = finish(tools, builder)
    spawn, patch, note, message = response["output"]
    assert (spawn["type"], spawn["name"], spawn["namespace"], spawn["arguments"]) == (
        "function_call", "spawn", "agents", '{"task": "x"}')
    assert (patch["type"], patch["name"], patch["input"]) == (
        "custom_tool_call", "apply_patch", "*** Begin")
    assert "namespace" not in patch
    # A custom call with arguments that are not {"input": ...} keeps them as its input.
    assert (note["type"], note["name"], note["namespace"], note["input"]) == (
        "custom_tool_call", "note", "agents", "{}")
    assert message["type"] == "message"
    assert [(c["name"], c["namespace"], c["custom"]) for c in tools.turn_calls] == [
        ("spawn", "agents", False), ("apply_patch", None, True), ("note", "agents", True)]


def tagged(*texts: str) -> list[str]:
    """The output item types of a turn in the built-in format, fed in ``texts`` pieces;
    each message's text after a colon."""
    builder = new_builder()
    builder.created()
    builder.in_progress()
    tools = ToolTurns(ToolPlan(mode="tags"), builder, counting_ids())
    for text in texts:
        tools.text(text)
    response = finish(tools, builder)
    return [item["type"] if item["type"] != "message"
            else "message:" + item["content"][0]["text"] for item in response["output"]]


def test_whitespace_around_calls_in_the_builtin_format_is_no_message() -> None:
    call = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>'
    # Line ends before, between and after parallel calls: the calls alone.
    assert tagged("\n", call, "\n", " ", call, "\n") == ["function_call", "function_call"]
    # Whitespace that text follows is the text's.
    assert tagged(call, "\n", "Done.") == ["function_call", "message:\nDone."]
    assert tagged("Hello", " ", "world") == ["message:Hello world"]
    assert tagged("Checking.\n", call) == ["message:Checking.\n", "function_call"]
    # A reply of whitespace alone is still a reply.
    assert tagged("\n", " ") == ["message:\n "]
