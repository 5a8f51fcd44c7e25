"""Hypothesis over HTTP: what any body does to ``POST /v1/responses``.

* Bodies built from valid fields (each field's value is one the server documents; the
  combinations are free, so some combinations are refused): never a 5xx; a 200 is a
  Response (or, streamed, events) valid against the spec; a 4xx is OpenAI's error shape
  and names a ``param`` when it is a 400 about the body.
* Garbage (random bytes, random text, random JSON values, wrong content types, valid
  JSON for the wrong fields): always a 4xx in OpenAI's error shape, and the server
  still answers a normal request afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import ServerThread

from .conftest import AUTH, MODEL, scaled
from .event_schema import assert_error_shape, assert_valid_event, problems
from .test_streams import TOOL, sse_events, texts

EXAMPLES = scaled(40)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def http(fuzz_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.base_url + "/v1", headers=AUTH,
                      timeout=30) as client:
        yield client


# -- valid fields, free combinations -----------------------------------------------------

def _part(role: str) -> st.SearchStrategy[dict[str, Any]]:
    text = st.builds(lambda kind, value: {"type": kind, "text": value},
                     st.sampled_from(["input_text", "output_text"]), texts())
    if role != "assistant":
        return text
    return st.one_of(text, st.builds(lambda value: {"type": "refusal", "refusal": value},
                                     texts()))


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["user", "assistant", "system", "developer"]))
    content: Any = draw(st.one_of(texts(), st.lists(_part(role), max_size=3)))
    item: dict[str, Any] = {"role": role, "content": content}
    if draw(st.booleans()):
        item["type"] = "message"
    if draw(st.booleans()):
        item["status"] = draw(st.sampled_from(["in_progress", "completed", "incomplete"]))
    return item


ITEMS = st.one_of(
    messages(),
    st.builds(lambda call_id, args: {"type": "function_call", "call_id": call_id,
                                     "name": "lookup", "arguments": args},
              st.text(min_size=1, max_size=20), texts()),
    st.builds(lambda call_id, output: {"type": "function_call_output", "call_id": call_id,
                                       "output": output},
              st.text(min_size=1, max_size=20), texts()),
    st.builds(lambda summary: {"type": "reasoning", "summary": [
        {"type": "summary_text", "text": text} for text in summary]},
        st.lists(texts(), max_size=2)),
)
FORMATS = st.sampled_from([
    {"type": "text"}, {"type": "json_object"},
    {"type": "json_schema", "name": "answer", "strict": True,
     "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}},
])
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "instructions": st.one_of(st.none(), texts()),
    "previous_response_id": st.sampled_from([None, "resp_does_not_exist"]),
    "store": st.one_of(st.none(), st.booleans()),
    "background": st.one_of(st.none(), st.booleans()),
    "stream": st.one_of(st.none(), st.booleans()),
    "tools": st.sampled_from([None, [], [TOOL]]),
    "tool_choice": st.sampled_from([None, "none", "auto", "required",
                                    {"type": "function", "name": "lookup"}]),
    "parallel_tool_calls": st.one_of(st.none(), st.booleans()),
    "max_output_tokens": st.one_of(st.none(), st.integers(1, 2**20)),
    "max_tool_calls": st.one_of(st.none(), st.integers(1, 10)),
    "temperature": st.one_of(st.none(), st.floats(0, 2)),
    "top_p": st.one_of(st.none(), st.floats(0, 1)),
    "top_logprobs": st.one_of(st.none(), st.integers(0, 20)),
    "text": st.one_of(st.none(), st.builds(lambda fmt: {"format": fmt}, FORMATS)),
    "reasoning": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"]),
        "summary": st.sampled_from(["auto", "concise", "detailed"])})),
    "truncation": st.sampled_from([None, "auto", "disabled"]),
    "metadata": st.one_of(st.none(), st.dictionaries(st.text(max_size=64),
                                                     st.text(max_size=512), max_size=16)),
    "include": st.one_of(st.none(), st.lists(st.sampled_from(
        ["message.output_text.logprobs", "reasoning.encrypted_content"]), max_size=2)),
    "prompt_cache_key": st.one_of(st.none(), st.text(max_size=40)),
    "prompt_cache_retention": st.sampled_from([None, "in_memory", "24h"]),
    "safety_identifier": st.one_of(st.none(), st.text(max_size=64)),
    "service_tier": st.sampled_from([None, "auto", "default", "flex", "scale", "priority"]),
    "user": st.one_of(st.none(), st.text(max_size=20)),
    "stream_options": st.sampled_from([None, {}, {"include_obfuscation": False}]),
    # vLLM's extensions.
    "request_id": st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    "cache_salt": st.one_of(st.none(), st.text(max_size=20)),
    "priority": st.one_of(st.none(), st.integers(-100, 100)),
    "enable_response_messages": st.one_of(st.none(), st.booleans()),
    "seed": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "top_k": st.one_of(st.none(), st.integers(-1, 1000)),
    "min_p": st.one_of(st.none(), st.floats(0, 1)),
    "repetition_penalty": st.one_of(st.none(), st.floats(0.01, 2)),
    "stop": st.one_of(st.none(), st.text(max_size=5), st.lists(st.text(max_size=5), max_size=16)),
    "ignore_eos": st.one_of(st.none(), st.booleans()),
}


@st.composite
def valid_field_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": draw(st.sampled_from([MODEL, MODEL, MODEL, "gpt-4o"])),
        "input": draw(st.one_of(texts(), st.lists(ITEMS, min_size=1, max_size=4))),
    }
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=10)):
        body[name] = draw(FIELDS[name])
    if body.get("ignore_eos"):
        # Exactly max_output_tokens tokens: bounded so a run stays within its budget.
        body["max_output_tokens"] = draw(st.integers(1, 64))
    return body


def check_error(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert_error_shape(body)
    return body["error"]  # type: ignore[no-any-return]


@given(body=valid_field_bodies())
@SETTINGS
def test_valid_fields_never_give_a_server_error(http: httpx.Client, body: dict[str, Any]
                                                ) -> None:
    response = http.post("/responses", json=body)
    if response.status_code >= 400:
        error = check_error(response)
        if response.status_code == 400:
            assert error["param"], error
        return
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        for event in sse_events(response.content):
            assert_valid_event(event)
        return
    found = problems(response.json(), "Response")
    assert not found, found


# -- garbage -------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
# Valid JSON objects that are not create bodies: known names with wrong types, unknown
# names, a missing model or input.
WRONG_OBJECTS = st.one_of(
    st.dictionaries(st.sampled_from(["model", "input", "tools", "metadata", "text",
                                     "max_output_tokens", "stream", "include", "reasoning"]),
                    JSON_VALUES, min_size=1, max_size=5)
    .filter(lambda body: not ({"model", "input"} <= body.keys())),
    st.builds(lambda extra, value: {"model": MODEL, "input": "hi", extra: value},
              st.text(min_size=1).filter(lambda name: name not in FIELDS and name not in (
                  "model", "input", "conversation", "prompt", "context_management")),
              JSON_VALUES),
    st.builds(lambda value: {"model": MODEL, "input": value},
              JSON_VALUES.filter(lambda value: not isinstance(value, str | list))),
)
GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    JSON_VALUES.filter(lambda value: not isinstance(value, dict)).map(
        lambda value: json.dumps(value).encode()),
    WRONG_OBJECTS.map(lambda value: json.dumps(value).encode()),
    # Truncated or nested too deeply for any sane decoder.
    st.integers(1, 200_000).map(lambda depth: b"[" * depth),
    st.builds(lambda body, cut: json.dumps(body).encode()[:cut],
              st.fixed_dictionaries({"model": st.just(MODEL), "input": texts()}),
              st.integers(0, 20)),
)


@given(body=GARBAGE, content_type=st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain",
     "application/x-www-form-urlencoded", None]))
@SETTINGS
def test_garbage_gives_a_4xx_in_openai_shape(http: httpx.Client, body: bytes,
                                             content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = http.post("/responses", content=body, headers=headers)
    check_error(response)


# The Conversations API's bodies: garbage, and objects with its field names holding any
# JSON (items of every shape among them).
CONVERSATION_BODIES = st.one_of(
    GARBAGE,
    st.dictionaries(st.sampled_from(["items", "metadata", "include"]),
                    JSON_VALUES | st.lists(JSON_VALUES | st.fixed_dictionaries(
                        {"role": st.sampled_from(["user", "assistant", "tool"]),
                         "content": JSON_VALUES}), max_size=25),
                    max_size=3).map(lambda value: json.dumps(value).encode()),
)


@pytest.fixture(scope="module")
def conversation_id(http: httpx.Client) -> str:
    created = http.post("/conversations", json={})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


@given(body=CONVERSATION_BODIES, path=st.sampled_from(["", "/{id}", "/{id}/items"]))
@SETTINGS
def test_conversation_bodies_give_200_or_a_4xx_in_openai_shape(
        http: httpx.Client, conversation_id: str, body: bytes, path: str) -> None:
    response = http.post("/conversations" + path.format(id=conversation_id), content=body,
                         headers={"content-type": "application/json"})
    if response.status_code != 200:
        check_error(response)


def test_still_healthy_after_the_garbage(http: httpx.Client, fuzz_server: ServerThread
                                         ) -> None:
    response = http.post("/responses", json={"model": MODEL, "input": "still there?"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert httpx.get(fuzz_server.base_url + "/health").status_code == 200
