"""Bad create requests over HTTP: each is the right 4xx with the right ``param`` in
OpenAI's error shape, never a 500, the engine never sees it, and the server stays healthy."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.server.helpers import MODEL, on_server
from tests.support.errors import assert_openai_error
from tests.support.server import ServerThread, engine_of


def body(**fields: Any) -> bytes:
    return json.dumps({"model": MODEL, "input": "hi", **fields}).encode()


def raw(text: str) -> bytes:
    return text.encode()


JSON = {"content-type": "application/json"}
WEATHER_TOOL = {"type": "function", "name": "weather", "parameters": {"type": "object"}}

# (request body, headers, status, param, code or None)
CASES = [
    # wrong types
    pytest.param(body(input=5), JSON, 400, "input", "invalid_type", id="input-int"),
    pytest.param(body(model=7), JSON, 400, "model", "invalid_type", id="model-int"),
    pytest.param(body(temperature="hot"), JSON, 400, "temperature", "invalid_type",
                 id="temperature-string"),
    pytest.param(body(stream="yes"), JSON, 400, "stream", "invalid_type", id="stream-string"),
    pytest.param(body(metadata=["a"]), JSON, 400, "metadata", "invalid_type",
                 id="metadata-list"),
    pytest.param(body(metadata={"k": 1}), JSON, 400, "metadata", "invalid_type",
                 id="metadata-value-int"),
    pytest.param(body(text={"format": "json"}), JSON, 400, "text.format", "invalid_type",
                 id="text-format-string"),
    pytest.param(body(input=[{"role": "user", "content": 3}]), JSON, 400, "input[0].content",
                 "invalid_type", id="content-int"),
    # unknown fields
    pytest.param(body(foo=1), JSON, 400, "foo", "unknown_parameter", id="unknown-top-level"),
    pytest.param(body(text={"format": {"type": "text", "foo": 1}}), JSON, 400,
                 "text.format.foo", "unknown_parameter", id="unknown-text-format-field"),
    pytest.param(body(reasoning={"effort": "low", "bar": 2}), JSON, 400, "reasoning.bar",
                 "unknown_parameter", id="unknown-reasoning-field"),
    pytest.param(body(input=[{"role": "user", "content": "x", "extra": 1}]), JSON, 400,
                 "input[0].extra", "unknown_parameter", id="unknown-item-field"),
    # missing fields
    pytest.param(raw('{"input": "hi"}'), JSON, 400, "model", "missing_required_parameter",
                 id="missing-model"),
    pytest.param(raw('{"model": "scripted"}'), JSON, 400, "input",
                 "missing_required_parameter", id="missing-input"),
    # bodies that are not a JSON object
    pytest.param(raw("{bad json"), JSON, 400, None, "invalid_json", id="bad-json"),
    pytest.param(b"", JSON, 400, None, "invalid_json", id="empty-body"),
    pytest.param(raw("null"), JSON, 400, None, None, id="json-null"),
    pytest.param(raw('["model"]'), JSON, 400, None, None, id="json-array"),
    pytest.param(b'{"model": "scripted", "input": "\xff\xfe"}', JSON, 400, None,
                 "invalid_json", id="invalid-utf8"),
    pytest.param(body(), {"content-type": "text/plain"}, 415, None, "unsupported_media_type",
                 id="text-plain"),
    pytest.param(body(), {"content-type": "application/x-www-form-urlencoded"}, 415, None,
                 "unsupported_media_type", id="form-encoded"),
    pytest.param(b"[" * 100_000, JSON, 400, None, None, id="deep-nesting-top"),
    pytest.param(raw('{"model": "scripted", "input": "hi", "tools": [{"type": "function", '
                     '"name": "f", "parameters": ' + "[" * 100_000 + "]" * 100_000 + "}]}"),
                 JSON, 400, "tools[0].parameters", "invalid_value", id="deep-nesting-inside"),
    pytest.param(raw('{"model": "scripted", "input": "hi", "temperature": 1e400}'), JSON, 400,
                 "temperature", None, id="number-1e400"),
    # bounds
    pytest.param(body(metadata={f"k{n}": "v" for n in range(17)}), JSON, 400, "metadata",
                 "object_above_max_properties", id="metadata-17-keys"),
    pytest.param(body(metadata={"k" * 65: "v"}), JSON, 400, "metadata", "invalid_value",
                 id="metadata-key-65"),
    pytest.param(body(metadata={"k": "v" * 513}), JSON, 400, "metadata", "invalid_value",
                 id="metadata-value-513"),
    pytest.param(body(max_output_tokens=0), JSON, 400, "max_output_tokens", "invalid_value",
                 id="max-output-tokens-0"),
    pytest.param(body(max_output_tokens=-5), JSON, 400, "max_output_tokens", "invalid_value",
                 id="max-output-tokens-negative"),
    pytest.param(body(temperature=3), JSON, 400, "temperature", "invalid_value",
                 id="temperature-3"),
    pytest.param(body(top_p=1.5), JSON, 400, "top_p", "invalid_value", id="top-p-1.5"),
    pytest.param(body(top_logprobs=21), JSON, 400, "top_logprobs", "invalid_value",
                 id="top-logprobs-21"),
    pytest.param(body(truncation="sometimes"), JSON, 400, "truncation", "invalid_value",
                 id="truncation-enum"),
    pytest.param(body(service_tier="gold"), JSON, 400, "service_tier", "invalid_value",
                 id="service-tier-enum"),
    pytest.param(body(include=["everything"]), JSON, 400, "include[0]", "invalid_value",
                 id="include-unknown"),
    # input items
    pytest.param(body(input=[{"type": "telepathy"}]), JSON, 400, "input[0].type",
                 "invalid_value", id="unknown-item-type"),
    pytest.param(body(input=[{"role": "wizard", "content": "x"}]), JSON, 400,
                 "input[0].role", "invalid_value", id="bad-role"),
    pytest.param(body(input=[{"role": "user", "content": "ok"},
                             {"role": "user", "content": [{"type": "input_video"}]}]),
                 JSON, 400, "input[1].content[0].type", "invalid_value",
                 id="unknown-content-part"),
    pytest.param(body(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
                 JSON, 400, "input[0].call_id", "missing_required_parameter",
                 id="function-call-without-call-id"),
    # tools
    pytest.param(body(tools=[{"type": "teleport"}]), JSON, 400, "tools[0].type",
                 "unsupported_tool", id="unsupported-tool-type"),
    pytest.param(body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "news"}),
                 JSON, 400, "tool_choice.name", None, id="tool-choice-missing-tool"),
    pytest.param(body(tool_choice="required"), JSON, 400, "tool_choice", None,
                 id="tool-choice-required-without-tools"),
    pytest.param(body(tools=[WEATHER_TOOL, WEATHER_TOOL]), JSON, 400, "tools[1].name", None,
                 id="duplicate-tool-name"),
    # combinations and resources
    pytest.param(body(background=True, store=False), JSON, 400, "background", None,
                 id="background-without-store"),
    pytest.param(body(model="gpt-nonexistent"), JSON, 404, "model", "model_not_found",
                 id="model-not-served"),
    pytest.param(body(previous_response_id="resp_nope"), JSON, 404, "previous_response_id",
                 "previous_response_not_found", id="previous-response-missing"),
    pytest.param(body(conversation="conv_nope"), JSON, 404, "conversation",
                 "conversation_not_found", id="conversation-missing"),
    pytest.param(body(conversation={"id": "conv_1"}, previous_response_id="resp_1"), JSON,
                 400, "conversation", "invalid_value", id="conversation-and-previous-response"),
]



@pytest.mark.parametrize("content, headers, status, param, code", CASES)
def test_bad_create_request(scripted_server: ServerThread, http: httpx.Client,
                            content: bytes, headers: dict[str, str], status: int,
                            param: str | None, code: str | None) -> None:
    engine = engine_of(scripted_server)
    submitted = on_server(scripted_server, lambda: len(engine.requests))
    response = http.post("/v1/responses", content=content, headers=headers)
    error = assert_openai_error(response, status, param=param, code=code,
                                type="invalid_request_error")
    assert len(error["message"]) < 2000  # a message, not an echo of the body
    assert on_server(scripted_server, lambda: len(engine.requests)) == submitted
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_bad_request_with_the_sdk(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="x", temperature=3, stream=stream)
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "temperature"


def test_healthy_after_the_table(client: openai.OpenAI, http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    response = client.responses.create(model=MODEL, input="still serving")
    assert response.status == "completed" and response.output_text == "You said: still serving"
