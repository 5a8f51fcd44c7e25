"""A forced ``custom`` tool with a grammar (Lark or regex): the whole model output is the
tool's input, constrained by the grammar through structured output, streamed as
``response.custom_tool_call_input.delta`` events. With the scripted engine, which
decodes under the grammar as vLLM does (xgrammar, :mod:`trio_responses.engine.grammars`),
through the strict SDK; the real engine's test is in tests/engine/test_custom_grammars_real.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import lark
import openai
import pytest

from tests.server.helpers import http_client
from tests.support.errors import assert_openai_error
from tests.support.events import as_dict, check_stream
from tests.support.server import ServerThread, engine_of
from trio_responses.engine.base import EngineRequest, Grammar
from trio_responses.engine.grammars import GrammarError, check_grammar, matching_text

# The scripted engine's reply is "You said: <input>": the grammar keeps what it allows.
GREETING_LARK = 'start: "You said: " WORD\nWORD: /[a-z]+/\n'
SERIAL_REGEX = r"[0-9]{3}-[a-z]+"
WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def custom(name: str, syntax: str, definition: str) -> dict[str, Any]:
    return {"type": "custom", "name": name, "description": f"A {syntax} tool.",
            "format": {"type": "grammar", "syntax": syntax, "definition": definition}}


@pytest.fixture(scope="module")
def http(scripted_server: ServerThread) -> Iterator[httpx.Client]:
    with http_client(scripted_server) as plain:
        yield plain


def last_engine_request(server: ServerThread) -> EngineRequest:
    engine = engine_of(server)
    return server.call(lambda: engine.requests[-1])


def stream(client: openai.OpenAI, **params: Any) -> list[dict[str, Any]]:
    with client.responses.stream(model="scripted", **params) as events:
        got = [as_dict(event) for event in events]
    check_stream(got)
    return got


def test_a_forced_lark_tool_gets_input_that_parses(client: openai.OpenAI,
                                                   scripted_server: ServerThread) -> None:
    tool = custom("greet", "lark", GREETING_LARK)
    events = stream(client, input="hello there, 42", tools=[WEATHER, tool],
                    tool_choice={"type": "custom", "name": "greet"})
    [call] = events[-1]["response"]["output"]
    assert call["type"] == "custom_tool_call" and call["name"] == "greet"
    # The reply would have been "You said: hello there, 42"; the grammar stops at "hello".
    assert call["input"] == "You said: hello"
    lark.Lark(GREETING_LARK).parse(call["input"])
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert len(deltas) > 1 and "".join(deltas) == call["input"]  # streamed as written
    [done] = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == call["input"]
    seen = last_engine_request(scripted_server)
    assert seen.sampling.grammar == Grammar("lark", GREETING_LARK)
    assert seen.sampling.json_schema is None
    assert "Call the tool greet (A lark tool.) now" in seen.messages[0]["content"]


def test_a_forced_regex_tool_gets_input_that_matches(client: openai.OpenAI) -> None:
    tool = custom("serial", "regex", SERIAL_REGEX)
    response = client.responses.create(model="scripted", input="anything", tools=[tool],
                                       tool_choice={"type": "custom", "name": "serial"})
    [call] = response.output
    assert call.type == "custom_tool_call"
    assert re.fullmatch(SERIAL_REGEX, call.input), call.input


def test_a_namespaced_grammar_tool(client: openai.OpenAI) -> None:
    space = {"type": "namespace", "name": "ids", "description": "Identifiers.",
             "tools": [custom("serial", "regex", SERIAL_REGEX)]}
    response = client.responses.create(model="scripted", input="x", tools=[space],  # type: ignore[list-item]
                                       tool_choice={"type": "custom", "name": "ids__serial"})
    [call] = response.output
    assert call.type == "custom_tool_call" and call.namespace == "ids"  # type: ignore[union-attr]
    assert re.fullmatch(SERIAL_REGEX, call.input)  # type: ignore[union-attr]


def test_an_unforced_grammar_tool_is_offered_as_before(client: openai.OpenAI,
                                                       scripted_server: ServerThread) -> None:
    tool = custom("serial", "regex", SERIAL_REGEX)
    response = client.responses.create(model="scripted", input="hi", tools=[tool])
    assert response.output_text == "You said: hi"
    assert last_engine_request(scripted_server).sampling.grammar is None


@pytest.mark.parametrize("tools, param", [
    ([WEATHER, custom("bad", "regex", "[0-9")], "tools[1].format.definition"),
    ([custom("bad", "lark", "start: missing_rule")], "tools[0].format.definition"),
    ([{"type": "namespace", "name": "ns", "description": "d",
       "tools": [WEATHER, custom("bad", "lark", "start: ::: nonsense")]}],
     "tools[0].tools[1].format.definition"),
])
def test_a_grammar_that_does_not_compile_is_a_400(http: httpx.Client, tools: list[Any],
                                                  param: str) -> None:
    bad = http.post("/v1/responses", json={"model": "scripted", "input": "x", "tools": tools})
    assert_openai_error(bad, 400, param=param, code="invalid_grammar")


def test_after_a_forced_grammar_call_the_next_turn_answers_freely(
        http: httpx.Client, scripted_server: ServerThread) -> None:
    tool = custom("serial", "regex", SERIAL_REGEX)
    created = http.post("/v1/responses", headers={"x-responses-tool-wait": "true"}, json={
        "model": "scripted", "input": "go", "tools": [tool], "stream": False,
        "tool_choice": {"type": "custom", "name": "serial"}, "background": True,
        "store": True}).json()
    from tests.support.waiting import wait_until
    response_id = created["id"]
    wait_until(lambda: http.get(f"/v1/responses/{response_id}").json()["output"] != [],
               timeout=10)
    [call] = http.get(f"/v1/responses/{response_id}").json()["output"]
    posted = http.post(f"/v1/responses/{response_id}/tool_outputs", json={
        "tool_outputs": [{"call_id": call["call_id"], "output": "ok"}]})
    assert posted.status_code == 200, posted.text
    wait_until(lambda: http.get(f"/v1/responses/{response_id}").json()["status"]
               == "completed", timeout=10)
    final = http.get(f"/v1/responses/{response_id}").json()
    assert [item["type"] for item in final["output"]] == [
        "custom_tool_call", "custom_tool_call_output", "message"]
    assert last_engine_request(scripted_server).sampling.grammar is None


# -- the scripted engine's constrained decoding ------------------------------------------

def test_matching_text_follows_the_wanted_text_while_allowed() -> None:
    assert matching_text(Grammar("regex", "[a-z]+"), "abc", 50) == "abc"
    assert matching_text(Grammar("regex", "[a-z]+"), "ab1c", 50) == "ab"
    assert matching_text(Grammar("regex", "[0-9]{2}x"), "", 50) == "00x"
    assert matching_text(Grammar("lark", 'start: "a" "b"+'), "abbbz", 50) == "abbb"
    assert len(matching_text(Grammar("regex", "a+"), "a" * 100, 10)) == 10


def test_check_grammar_names_the_problem() -> None:
    with pytest.raises(GrammarError):
        check_grammar(Grammar("regex", "(unclosed"))
    check_grammar(Grammar("lark", GREETING_LARK))
