"""Deep nesting (issue 13, finding 6): a request nested deeper than the server can copy
is a 400 that names the field; a model's output nested deeper than Python can parse
is not a call, never an "Internal error (RecursionError)".

The probes: objects ~500 levels deep in ``tools[].parameters`` or ``text.format.schema``
gave a 500 with ~160 KB of traceback logged per 3 KB request; a tool call with deeply
nested JSON arguments failed its response with "Internal error (RecursionError)".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.errors import assert_openai_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.base import EngineRequest
from trio_responses.engine.scripted import ScriptedEngine, echo_reply, last_user_text
from trio_responses.protocol.nesting import MAX_NESTING_DEPTH

from .helpers import MODEL, http


def nested(depth: int) -> dict[str, Any]:
    """A JSON schema ``depth`` objects deep."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def deep_json(depth: int) -> bytes:
    """``{"a": {"a": ... 1}}``, ``depth`` objects deep, without building it in Python."""
    return b'{"a":' * depth + b"1" + b"}" * depth


DEEP_CALL = "[[deep call]]"


def reply(request: EngineRequest) -> str:
    """A tool call whose arguments nest 100,000 levels deep, when asked for."""
    if DEEP_CALL in last_user_text(request):
        arguments = "[" * 100_000 + "]" * 100_000
        return f'<tool_call>\n{{"name": "f", "arguments": {arguments}}}\n</tool_call>'
    return echo_reply(request)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, ScriptedEngine(reply=reply)) as server:
        yield server


def tool(parameters: Any) -> dict[str, Any]:
    return {"type": "function", "name": "f", "parameters": parameters}


def raw_body(field: str, value: bytes) -> bytes:
    """A create body with ``field`` (JSON path in the object below) set to ``value``."""
    template = {"model": MODEL, "input": "hi",
                "tools": [tool("@tools@")],
                "text": {"format": {"type": "json_schema", "name": "n", "schema": "@schema@"}}}
    text = json.dumps(template)
    for name in ("tools", "schema"):
        placeholder = f'"@{name}@"'
        text = text.replace(placeholder, value.decode() if name == field else "{}")
    return text.encode()


@pytest.mark.parametrize(("field", "param"), [
    ("tools", "tools[0].parameters"),
    ("schema", "text.format.schema"),
])
@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 10, 500, 5000])
def test_a_deep_request_is_a_400_naming_the_field(server: ServerThread, field: str, param: str,
                                                  depth: int) -> None:
    with http(server) as client:
        response = client.post("/v1/responses", content=raw_body(field, deep_json(depth)),
                               headers={"content-type": "application/json"})
        error = assert_openai_error(response, 400, param=param, code="invalid_value")
        assert f"more than {MAX_NESTING_DEPTH} levels" in error["message"]
        assert len(response.content) < 1000
        assert client.get("/health").status_code == 200


def test_deep_input_items_are_a_400(server: ServerThread) -> None:
    content = b'[{"type": "input_text", "text": "x", "x": ' + deep_json(500) + b"}]"
    body = b'{"model": "scripted", "input": [{"role": "user", "content": ' + content + b"}]}"
    with http(server) as client:
        response = client.post("/v1/responses", content=body,
                               headers={"content-type": "application/json"})
    assert_openai_error(response, 400, param="input[0].content", code="invalid_value")


def test_nesting_within_the_limit_still_works(server: ServerThread) -> None:
    # The tool list and its tool are two levels of the request; the schema gets the rest.
    parameters = nested(MAX_NESTING_DEPTH // 2 - 2)
    with strict_sdk(server) as client:
        response = client.responses.create(model=MODEL, input="hi", tools=[
            {"type": "function", "name": "f", "parameters": parameters, "strict": False}])
        assert response.status == "completed"
        assert response.tools[0].parameters == parameters  # type: ignore[union-attr]
        schema = nested(MAX_NESTING_DEPTH // 2 - 2)
        structured = client.responses.create(model=MODEL, input="hi", text={"format": {
            "type": "json_schema", "name": "deep", "schema": schema}})
        assert structured.status == "completed"


def test_a_deeply_nested_call_from_the_model_is_not_an_internal_error(
        server: ServerThread) -> None:
    """Arguments too deep to parse are not a call: the model's text is given back as
    text, as for any call whose JSON does not parse, and the response completes."""
    with strict_sdk(server) as client:
        response = client.responses.create(model=MODEL, input=DEEP_CALL, tools=[tool({
            "type": "object", "properties": {}})])
    assert response.status == "completed", response.error
    assert not [item for item in response.output if item.type == "function_call"]
    assert response.output_text.startswith("<tool_call>")
    assert response.output_text.count("[") == 100_000


def test_every_json_body_has_the_limit(server: ServerThread) -> None:
    """The Conversations API's bodies too (they are stored and echoed as well)."""
    item = b'{"type": "message", "role": "user", "content": [{"x": ' + deep_json(500) + b"}]}"
    with http(server) as client:
        for body, param in ((b'{"items": [' + item + b"]}", "items[0].content"),
                            (b'{"items": [' + deep_json(5000) + b"]}", "items[0].a")):
            response = client.post("/v1/conversations", content=body,
                                   headers={"content-type": "application/json"})
            error = assert_openai_error(response, 400, param=param, code="invalid_value")
            assert f"more than {MAX_NESTING_DEPTH} levels" in error["message"]
