"""The tool plan: decided once per request from the request and what the engine does
with tools, then followed by the first turn's engine request and the turns after it."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from trio_responses.engine.base import EngineRequest, SamplingOptions
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime.tools import later_turns, plan_tools

WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TIME = {"type": "function", "name": "get_time"}
AGENTS = {"type": "namespace", "name": "agents", "description": "Sub-agents.",
          "tools": [{"type": "function", "name": "spawn"}, {"type": "custom", "name": "note"}]}
PATCH = {"type": "custom", "name": "apply_patch"}


def create(**fields: Any) -> Any:
    body = {"model": "scripted", "input": "hi", **fields}
    return decode_create_request(json.dumps(body).encode())


def engine(*, parses: bool = False, renders: bool = False) -> Any:
    return SimpleNamespace(parses_tool_calls=parses, renders_tools=renders)


def first(**fields: Any) -> EngineRequest:
    return EngineRequest(request_id="resp_1", messages=({"role": "user", "content": "hi"},),
                         sampling=SamplingOptions(max_tokens=10), **fields)


def test_no_tools_in_play_no_plan() -> None:
    assert plan_tools(create(), engine()) is None
    assert plan_tools(create(tools=[WEATHER], tool_choice="none"), engine()) is None


def test_the_mode_follows_the_choice_and_the_engine() -> None:
    plan = plan_tools(create(tools=[WEATHER]), engine())
    assert plan is not None and (plan.mode, plan.free_mode) == ("tags", "tags")
    plan = plan_tools(create(tools=[WEATHER]), engine(parses=True))
    assert plan is not None and (plan.mode, plan.free_mode) == ("engine", "engine")
    plan = plan_tools(create(tools=[WEATHER], tool_choice="required"), engine(parses=True))
    assert plan is not None and (plan.mode, plan.free_mode) == ("json", "engine")
    plan = plan_tools(create(tools=[WEATHER, TIME], parallel_tool_calls=False,
                             max_tool_calls=2,
                             tool_choice={"type": "function", "name": "get_time"}), engine())
    assert plan is not None and plan.mode == "json"
    assert (plan.parallel, plan.max_calls) == (False, 2)
    assert plan.call_schema is not None
    assert plan.call_schema["properties"]["name"] == {"const": "get_time"}


def test_the_first_turn_follows_the_plan() -> None:
    taught = plan_tools(create(tools=[WEATHER]), engine())
    assert taught is not None
    request = taught.first_turn(first())
    assert "<tools>" in request.messages[0]["content"] and not request.parse_tool_calls
    assert request.tools == ({"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["parameters"]}},)
    listed = plan_tools(create(tools=[WEATHER]), engine(parses=True, renders=True))
    assert listed is not None
    request = listed.first_turn(first())
    assert request.messages == first().messages and request.parse_tool_calls
    forced = plan_tools(create(tools=[WEATHER], tool_choice="required"), engine())
    assert forced is not None
    request = forced.first_turn(first())
    assert request.messages == first().messages
    assert request.sampling.json_schema == forced.call_schema


async def test_later_turns_add_each_turn_as_chat_messages() -> None:
    scripted = ScriptedEngine()
    await scripted.start()
    plan = plan_tools(create(tools=[WEATHER, AGENTS, PATCH], tool_choice="required"),
                      scripted)
    assert plan is not None
    start = plan.first_turn(first())
    next_turn = later_turns(plan, start, scripted)
    # A namespaced and a custom tool's calls go back under the names they were offered.
    calls = [{"call_id": "c1", "name": "get_weather", "arguments": "{}", "output": "rain"},
             {"call_id": "c2", "name": "spawn", "namespace": "agents", "custom": False,
              "arguments": "{}", "output": "spawned"},
             {"call_id": "c3", "name": "apply_patch", "namespace": None, "custom": True,
              "arguments": '{"input": "+x"}', "output": "patched"}]
    stream = await next_turn(calls)
    await stream.aclose()
    [sent] = scripted.requests
    assert sent.request_id == "resp_1_turn1" and sent.sampling.json_schema is None
    # The free turn is taught the format the forced one did not need.
    assert "<tools>" in sent.messages[0]["content"]
    assert sent.messages[-4:] == (
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "c2", "type": "function",
             "function": {"name": "agents__spawn", "arguments": "{}"}},
            {"id": "c3", "type": "function",
             "function": {"name": "apply_patch", "arguments": '{"input": "+x"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        {"role": "tool", "tool_call_id": "c2", "content": "spawned"},
        {"role": "tool", "tool_call_id": "c3", "content": "patched"},
    )


def test_hosted_tools_alone_make_no_plan_and_custom_tools_can_be_forced() -> None:
    assert plan_tools(create(tools=[{"type": "web_search"}]), engine()) is None
    plan = plan_tools(create(tools=[{"type": "web_search"}, WEATHER, AGENTS, PATCH]), engine())
    assert plan is not None
    assert [tool["function"]["name"] for tool in plan.tools] == [
        "get_weather", "agents__spawn", "agents__note", "apply_patch"]
    forced = plan_tools(create(tools=[WEATHER, AGENTS, PATCH],
                               tool_choice={"type": "custom", "name": "note"}), engine())
    assert forced is not None and forced.call_schema is not None
    assert forced.call_schema["properties"]["name"] == {"const": "agents__note"}
    assert forced.call_schema["properties"]["arguments"]["required"] == ["input"]
