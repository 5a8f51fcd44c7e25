"""Every kind of tool the current openai SDK declares, over HTTP with the strict SDK and
the scripted engine: namespaced functions (calls come back with their ``namespace``),
custom tools (``custom_tool_call`` items), hosted tools (accepted, echoed, never offered,
or refused by a flag), and ``client_metadata``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.server.helpers import http_client
from tests.support.errors import assert_openai_error
from tests.support.events import as_dict, check_stream
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.waiting import wait_until
from trio_responses.engine.base import EngineRequest

WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/s"}}
AGENTS = {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [
    {"type": "function", "name": "spawn", "strict": False, "parameters": {
        "type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}},
    {"type": "custom", "name": "note"},
]}
HOSTED = [{"type": "web_search", "external_web_access": False},
          {"type": "file_search", "vector_store_ids": ["vs_1"]},
          {"type": "code_interpreter", "container": {"type": "auto"}},
          {"type": "mcp", "server_label": "deepwiki", "server_url": "https://example.com"},
          {"type": "image_generation"}, {"type": "shell"}, {"type": "apply_patch"},
          {"type": "computer_use_preview", "display_width": 1024, "display_height": 768,
           "environment": "linux"}]


@pytest.fixture(scope="module")
def http(scripted_server: ServerThread) -> Iterator[httpx.Client]:
    with http_client(scripted_server) as plain:
        yield plain


def last_engine_request(server: ServerThread) -> EngineRequest:
    engine = engine_of(server)
    return server.call(lambda: engine.requests[-1])


def offered_names(request: EngineRequest) -> list[str]:
    return [tool["function"]["name"] for tool in request.tools]


def stream(client: openai.OpenAI, **params: Any) -> list[dict[str, Any]]:
    with client.responses.stream(model="scripted", **params) as events:
        got = [as_dict(event) for event in events]
    check_stream(got)
    return got


def test_a_namespaced_function_is_called_with_its_namespace(
        client: openai.OpenAI, scripted_server: ServerThread) -> None:
    events = stream(client, input='[[call:agents__spawn {"task": "tests"}]]',
                    tools=[WEATHER, AGENTS])
    assert offered_names(last_engine_request(scripted_server)) == [
        "get_weather", "agents__spawn", "agents__note"]
    [call] = events[-1]["response"]["output"]
    call.pop("parsed_arguments")  # the SDK's stream helper adds it; not wire JSON
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert (call["name"], call["namespace"], call["arguments"]) == (
        "spawn", "agents", '{"task": "tests"}')
    [done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done["name"] == "spawn"
    # Codex's next turn: the whole history again, the call replayed with its output.
    second = client.responses.create(model="scripted", store=False, tools=[WEATHER, AGENTS],
                                     input=[{"role": "user", "content": "go"}, call,
                                            {"type": "function_call_output",
                                             "call_id": call["call_id"], "output": "spawned"}])
    assert second.output_text == "The tool returned: spawned"
    replayed = last_engine_request(scripted_server).messages
    assert replayed[-2]["tool_calls"] == [{"id": call["call_id"], "type": "function",
                                          "function": {"name": "agents__spawn",
                                                       "arguments": '{"task": "tests"}'}}]


@pytest.mark.parametrize("tool, name, namespace", [(PATCH, "apply_patch", None),
                                                   (AGENTS, "agents__note", "agents")])
def test_a_custom_tool_call_is_a_custom_tool_call_item(
        client: openai.OpenAI, scripted_server: ServerThread, tool: dict[str, Any],
        name: str, namespace: str | None) -> None:
    patch = "*** Begin Patch\n+héllo \u2028\n*** End Patch"
    arguments = json.dumps({"input": patch})
    events = stream(client, input=f"[[call:{name} {arguments}]]", tools=[WEATHER, tool])
    offered = last_engine_request(scripted_server).tools
    [shim] = [t["function"] for t in offered if t["function"]["name"] == name]
    assert shim["parameters"]["required"] == ["input"]
    [call] = events[-1]["response"]["output"]
    assert call["type"] == "custom_tool_call" and call["input"] == patch
    assert call["name"] == name.split("__")[-1] and call.get("namespace") == namespace
    kinds = [e["type"] for e in events]
    assert kinds[2:-1] == ["response.output_item.added",
                           "response.custom_tool_call_input.delta",
                           "response.custom_tool_call_input.done",
                           "response.output_item.done"]
    # Replayed with its output, the model sees both, under the name it was offered.
    second = client.responses.create(model="scripted", tools=[tool], input=[
        {"role": "user", "content": "patch it"}, call,
        {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"}])
    assert second.output_text == "The tool returned: Done!"
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [item.type for item in items] == ["message", "custom_tool_call",
                                             "custom_tool_call_output"]
    assert items[1].input == patch  # type: ignore[union-attr]


def test_a_forced_custom_tool(client: openai.OpenAI) -> None:
    response = client.responses.create(model="scripted", input="edit the file",
                                       tools=[WEATHER, PATCH],
                                       tool_choice={"type": "custom", "name": "apply_patch"})
    [call] = response.output
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    assert isinstance(call.input, str)
    assert response.tool_choice.type == "custom"  # type: ignore[union-attr]


def test_hosted_tools_are_echoed_and_never_offered(
        client: openai.OpenAI, scripted_server: ServerThread) -> None:
    response = client.responses.create(model="scripted", input="[[call:get_weather]]",
                                       tools=[*HOSTED, WEATHER])  # type: ignore[list-item]
    assert [item.type for item in response.output] == ["function_call"]
    assert offered_names(last_engine_request(scripted_server)) == ["get_weather"]
    echo = response.model_dump(mode="json", exclude_unset=True)["tools"]
    assert echo[:-1] == HOSTED and echo[-1]["name"] == "get_weather"
    # With nothing the model can call, it is taught no tools at all.
    only_hosted = client.responses.create(model="scripted", input="hello", tools=HOSTED)  # type: ignore[arg-type]
    assert only_hosted.output_text == "You said: hello"
    request = last_engine_request(scripted_server)
    assert request.tools == () and "<tools>" not in json.dumps(request.messages)


@pytest.mark.parametrize("choice", [{"type": "web_search_preview"}, {"type": "file_search"},
                                    {"type": "mcp", "server_label": "deepwiki"},
                                    {"type": "shell"}, {"type": "apply_patch"}])
def test_forcing_a_hosted_tool_is_a_clear_400(http: httpx.Client,
                                             choice: dict[str, Any]) -> None:
    response = http.post("/v1/responses", json={
        "model": "scripted", "input": "search", "tools": HOSTED, "tool_choice": choice})
    error = assert_openai_error(response, 400, param="tool_choice.type",
                                code="unsupported_tool")
    assert "hosted tool" in error["message"] and choice["type"] in error["message"]


def test_the_flag_refuses_hosted_tools(tmp_path_factory: pytest.TempPathFactory) -> None:
    with serve_scripted(tmp_path_factory, responses_reject_hosted_tools=True) as server, \
            http_client(server) as http, strict_sdk(server) as client:
        refused = http.post("/v1/responses", json={"model": "scripted", "input": "hi",
                                                    "tools": [WEATHER, *HOSTED]})
        error = assert_openai_error(refused, 400, param="tools[1].type",
                                    code="unsupported_tool")
        assert "--responses-reject-hosted-tools" in error["message"]
        counted = http.post("/v1/responses/input_tokens", json={
            "model": "scripted", "input": "hi", "tools": HOSTED[:1]})
        assert_openai_error(counted, 400, param="tools[0].type", code="unsupported_tool")
        # Tools the model can call still work.
        response = client.responses.create(model="scripted", input="[[call:agents__spawn]]",
                                           tools=[PATCH, AGENTS])  # type: ignore[list-item]
        assert response.output[0].type == "function_call"


@pytest.mark.parametrize("metadata", ['{"turn": 1}', {"session_id": "s1", "turn": {"n": 1}}])
def test_client_metadata_is_kept_and_echoed(client: openai.OpenAI, http: httpx.Client,
                                            metadata: Any) -> None:
    response = client.responses.create(model="scripted", input="hi",
                                       extra_body={"client_metadata": metadata})
    assert response.model_dump()["client_metadata"] == metadata
    stored = http.get(f"/v1/responses/{response.id}").json()
    assert stored["client_metadata"] == metadata
    plain = client.responses.create(model="scripted", input="hi")
    assert "client_metadata" not in plain.model_dump()
    bad = http.post("/v1/responses", json={"model": "scripted", "input": "hi",
                                           "client_metadata": 5})
    assert_openai_error(bad, 400, param="client_metadata", code="invalid_type")


def test_custom_tool_outputs_while_the_response_waits(http: httpx.Client,
                                                     client: openai.OpenAI) -> None:
    created = http.post("/v1/responses", headers={"x-responses-tool-wait": "true"}, json={
        "model": "scripted", "input": '[[call:apply_patch {"input": "+x"}]]',
        "tools": [PATCH], "background": True, "store": True}).json()
    response_id = created["id"]
    wait_until(lambda: http.get(f"/v1/responses/{response_id}").json()["output"] != [],
               timeout=10)
    call = http.get(f"/v1/responses/{response_id}").json()["output"][0]
    assert call["type"] == "custom_tool_call" and call["input"] == "+x"
    posted = http.post(f"/v1/responses/{response_id}/tool_outputs", json={
        "tool_outputs": [{"call_id": call["call_id"], "output": "applied"}]})
    assert posted.status_code == 200, posted.text
    wait_until(lambda: client.responses.retrieve(response_id).status == "completed",
               timeout=10)
    final = client.responses.retrieve(response_id)
    assert [item.type for item in final.output] == [
        "custom_tool_call", "custom_tool_call_output", "message"]
    assert final.output_text == "The tool returned: applied"
    with client.responses.retrieve(response_id, stream=True) as replay:
        check_stream([as_dict(event) for event in replay])


def test_a_conversation_keeps_namespaced_and_custom_calls(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    client.responses.create(model="scripted", conversation=conversation.id,
                            tools=[PATCH, AGENTS],  # type: ignore[list-item]
                            input='[[call:agents__spawn]] [[call:apply_patch {"input": "+y"}]]')
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.type for item in items] == ["message", "function_call", "custom_tool_call"]
    assert items[1].namespace == "agents"  # type: ignore[union-attr]
    assert items[2].input == "+y"  # type: ignore[union-attr]
    # The next turn reads them back as the calls the model made, and their outputs.
    answer = client.responses.create(
        model="scripted", conversation=conversation.id, tools=[PATCH, AGENTS],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": items[1].call_id,  # type: ignore[union-attr]
                "output": "spawned"},
               {"type": "custom_tool_call_output", "call_id": items[2].call_id,  # type: ignore[union-attr]
                "output": "patched"}])
    assert answer.output_text == "The tool returned: patched"
