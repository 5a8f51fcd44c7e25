"""The request's tools, sans-io: every kind the openai SDK declares is known (offered,
hosted or refused), what the model is offered and under which names, the checks, and an
echo the SDK's strict models parse."""

from __future__ import annotations

import typing
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response, Tool
from openai.types.responses.tool_param import ToolParam

from trio_responses.errors import InvalidRequest
from trio_responses.protocol.conversation import items_to_messages
from trio_responses.protocol.items import normalize_input
from trio_responses.protocol.tooldefs import (
    CUSTOM_PARAMETERS,
    HOSTED_TOOL_CHOICES,
    HOSTED_TOOL_REQUIRED,
    custom_arguments,
    custom_input,
    echo_tools,
    forced_tool,
    offered_tools,
    refuse_hosted_tools,
    validate_tool_choice,
    validate_tools,
)

TOOL_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Tool)
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
AGENTS = {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [
    {"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}},
    {"type": "custom", "name": "note"},
]}
# A minimal valid declaration of every hosted tool type.
HOSTED: dict[str, dict[str, Any]] = {
    kind: {"type": kind, **{key: {str: "x", int: 1024, list: ["vs_1"], dict: {}}[kinds[0]]
                            for key, kinds in required}}
    for kind, required in HOSTED_TOOL_REQUIRED.items()
}
HOSTED["computer_use_preview"]["environment"] = "linux"


def sdk_tool_types() -> dict[str, list[str]]:
    """Every tool type of the SDK's response ``Tool`` union, with its model's required
    fields (besides ``type``)."""
    kinds: dict[str, list[str]] = {}
    for model in typing.get_args(typing.get_args(Tool)[0]):
        required = sorted(name for name, field in model.model_fields.items()
                          if field.is_required() and name != "type")
        for kind in typing.get_args(model.model_fields["type"].annotation):
            kinds[kind] = required
    return kinds


def test_every_sdk_tool_type_is_known() -> None:
    """A new SDK tool type (or a new required field of a hosted one) fails here: decide
    whether the model is offered it, and what its echo needs."""
    kinds = sdk_tool_types()
    offered = {"function", "custom", "namespace"}
    assert set(kinds) == offered | set(HOSTED_TOOL_REQUIRED)
    for kind, required in HOSTED_TOOL_REQUIRED.items():
        assert sorted(key for key, _ in required) == kinds[kind], kind
    # The request side declares the same types.
    param_kinds = {kind for param in typing.get_args(ToolParam)
                   for kind in typing.get_args(typing.get_type_hints(
                       param, include_extras=True)["type"].__args__[0])}
    assert param_kinds == set(kinds)
    assert HOSTED_TOOL_CHOICES >= set(HOSTED_TOOL_REQUIRED)


def test_the_model_is_offered_functions_custom_and_namespaced_tools() -> None:
    tools = [WEATHER, PATCH, AGENTS, *HOSTED.values(),
             {"type": "function", "name": "by_program", "allowed_callers": ["programmatic"]}]
    validate_tools(tools)
    offered = offered_tools(tools)
    assert [(t.model_name, t.kind, t.name, t.namespace) for t in offered] == [
        ("get_weather", "function", "get_weather", None),
        ("apply_patch", "custom", "apply_patch", None),
        ("agents__spawn", "function", "spawn", "agents"),
        ("agents__note", "custom", "note", "agents"),
    ]
    assert offered[0].chat == {"type": "function", "function": {
        "name": "get_weather", "description": "The weather.",
        "parameters": WEATHER["parameters"]}}
    assert offered[1].chat == {"type": "function", "function": {
        "name": "apply_patch", "description": "Edit files.",
        "parameters": dict(CUSTOM_PARAMETERS)}}
    assert offered[2].chat["function"]["name"] == "agents__spawn"
    # Only hosted tools: nothing for the model to call.
    assert offered_tools(list(HOSTED.values())) == ()


def test_custom_input_round_trip() -> None:
    for text in ("", "*** Begin Patch\n+x\n", '{"not": "input"}', "é\u2028"):
        assert custom_input(custom_arguments(text)) == text
    # What a model wrote that is not the {"input": ...} object is the input as written.
    assert custom_input("plain words") == "plain words"
    assert custom_input('{"input": 5}') == '{"input": 5}'


def test_the_echo_parses_in_the_sdk_and_keeps_what_was_sent() -> None:
    tools = [WEATHER, PATCH, AGENTS, *HOSTED.values(),
             {**WEATHER, "name": "later", "defer_loading": True, "strict": False,
              "allowed_callers": ["direct"], "output_schema": {"type": "object"}}]
    validate_tools(tools)
    echo = echo_tools(tools)
    for sent, shown in zip(tools, echo, strict=True):
        parsed = TOOL_ADAPTER.validate_python(shown)
        assert parsed.type == sent["type"]
        if sent["type"] != "function":
            assert shown == sent
    assert echo[0] == {**WEATHER, "strict": True}  # OpenAI's default, filled in
    assert echo[-1]["defer_loading"] is True and echo[-1]["strict"] is False


def test_a_response_with_every_tool_kind_parses_in_the_sdk() -> None:
    from tests.protocol.builders import new_builder

    builder = new_builder(tools=[WEATHER, PATCH, AGENTS, *HOSTED.values()],
                          client_metadata={"session_id": "s1"})
    builder.created()
    builder.in_progress()
    builder.function_call(call_id="c1", name="spawn", arguments="{}", namespace="agents")
    builder.custom_tool_call(call_id="c2", name="note", input_text="hi", namespace="agents")
    builder.tool_output(call_id="c2", output="noted", custom=True)
    parsed = Response.model_validate(builder.response)
    assert [item.type for item in parsed.output] == [
        "function_call", "custom_tool_call", "custom_tool_call_output"]
    assert parsed.output[0].namespace == "agents"  # type: ignore[union-attr]
    assert builder.response["client_metadata"] == {"session_id": "s1"}


@pytest.mark.parametrize(("tools", "param", "code"), [
    ([{"type": "teleport"}], "tools[0].type", "unsupported_tool"),
    ([{"type": "file_search"}], "tools[0].vector_store_ids", "missing_required_parameter"),
    ([{"type": "mcp", "server_label": 5}], "tools[0].server_label", "invalid_type"),
    ([{"type": "computer_use_preview", "display_width": True, "display_height": 1,
       "environment": "linux"}], "tools[0].display_width", "invalid_type"),
    ([{"type": "code_interpreter", "container": []}], "tools[0].container", "invalid_type"),
    ([{**PATCH, "format": {"type": "grammar", "syntax": "peg", "definition": "x"}}],
     "tools[0].format.syntax", "invalid_value"),
    ([{**PATCH, "format": {"type": "grammar", "syntax": "lark"}}],
     "tools[0].format.definition", "missing_required_parameter"),
    ([{**PATCH, "format": {"type": "text", "x": 1}}], "tools[0].format.x",
     "unknown_parameter"),
    ([{**PATCH, "parameters": {}}], "tools[0].parameters", "unknown_parameter"),
    ([{**WEATHER, "allowed_callers": []}], "tools[0].allowed_callers", "invalid_value"),
    ([{**WEATHER, "allowed_callers": ["robot"]}], "tools[0].allowed_callers",
     "invalid_value"),
    ([{**WEATHER, "defer_loading": "yes"}], "tools[0].defer_loading", "invalid_type"),
    ([{**AGENTS, "description": None}], "tools[0].description",
     "missing_required_parameter"),
    ([{**AGENTS, "tools": []}], "tools[0].tools", "invalid_value"),
    ([{**AGENTS, "tools": [{"type": "web_search"}]}], "tools[0].tools[0].type",
     "invalid_value"),
    ([{**AGENTS, "tools": [{"type": "function", "name": "a b"}]}], "tools[0].tools[0].name",
     "invalid_value"),
    ([{**AGENTS, "name": "bad name"}], "tools[0].name", "invalid_value"),
    # The names the model sees must be unique, across namespaces too.
    ([AGENTS, {"type": "function", "name": "agents__spawn"}], "tools[1].name",
     "invalid_value"),
    ([WEATHER, {**PATCH, "name": "get_weather"}], "tools[1].name", "invalid_value"),
])
def test_bad_tools_are_refused_by_param(tools: list[dict[str, Any]], param: str,
                                        code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_tools(tools)
    assert (caught.value.param, caught.value.code) == (param, code), caught.value.message


def test_hosted_tools_refused_when_the_server_is_told_to() -> None:
    refuse_hosted_tools([WEATHER, PATCH, AGENTS])
    with pytest.raises(InvalidRequest) as caught:
        refuse_hosted_tools([WEATHER, HOSTED["web_search"]])
    assert (caught.value.param, caught.value.code) == ("tools[1].type", "unsupported_tool")
    assert "--responses-reject-hosted-tools" in caught.value.message


@pytest.mark.parametrize("kind", sorted(HOSTED_TOOL_CHOICES))
def test_forcing_a_hosted_tool_is_refused(kind: str) -> None:
    tools = [WEATHER, *HOSTED.values()]
    with pytest.raises(InvalidRequest) as caught:
        validate_tool_choice({"type": kind}, tools)
    assert (caught.value.param, caught.value.code) == ("tool_choice.type", "unsupported_tool")
    assert f"hosted tool {kind!r}" in caught.value.message


def test_named_choices_of_custom_and_namespaced_tools() -> None:
    tools = [WEATHER, PATCH, AGENTS]
    for choice, model_name in [({"type": "function", "name": "get_weather"}, "get_weather"),
                               ({"type": "custom", "name": "apply_patch"}, "apply_patch"),
                               ({"type": "function", "name": "agents__spawn"}, "agents__spawn"),
                               ({"type": "function", "name": "spawn"}, "agents__spawn"),
                               ({"type": "custom", "name": "note"}, "agents__note")]:
        validate_tool_choice(choice, tools)
        forced = forced_tool(choice, tools)
        assert forced is not None and forced.model_name == model_name
    for choice, param in [({"type": "custom", "name": "get_weather"}, "tool_choice.name"),
                          ({"type": "function", "name": "apply_patch"}, "tool_choice.name")]:
        with pytest.raises(InvalidRequest) as caught:
            validate_tool_choice(choice, tools)
        assert caught.value.param == param
    twice = [AGENTS, {**AGENTS, "name": "more"}]
    with pytest.raises(InvalidRequest, match="ambiguous") as caught:
        validate_tool_choice({"type": "function", "name": "spawn"}, twice)
    validate_tool_choice({"type": "function", "name": "more__spawn"}, twice)
    with pytest.raises(InvalidRequest, match="no tool the model can call"):
        validate_tool_choice("required", [HOSTED["web_search"]])


def test_replayed_calls_become_the_messages_the_model_was_offered() -> None:
    items = normalize_input([
        {"type": "function_call", "call_id": "c1", "name": "spawn", "namespace": "agents",
         "arguments": "{}"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch",
         "input": "*** Begin Patch", "status": "completed"},
        {"type": "function_call_output", "call_id": "c1", "output": "spawned"},
        {"type": "custom_tool_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "patched"}]},
    ])
    assert items[0]["namespace"] == "agents"
    assert items[1] == {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch",
                        "input": "*** Begin Patch", "status": "completed"}
    assert items[3]["output"] == "patched"
    assert items_to_messages(items) == [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "agents__spawn", "arguments": "{}"}},
            {"id": "c2", "type": "function",
             "function": {"name": "apply_patch",
                          "arguments": custom_arguments("*** Begin Patch")}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "spawned"},
        {"role": "tool", "tool_call_id": "c2", "content": "patched"},
    ]
    for bad, param in [({"type": "function_call", "call_id": "c", "name": "f",
                         "arguments": "{}", "namespace": 5}, "input[0].namespace"),
                       ({"type": "custom_tool_call", "call_id": "c", "name": "f"},
                        "input[0].input")]:
        with pytest.raises(InvalidRequest) as caught:
            normalize_input([bad])
        assert caught.value.param == param
