"""Compliance suite for an OpenAI Responses API deployment.

Run it against your own deployment, from a checkout of this repository::

    RESPONSES_BASE_URL=http://localhost:8000/v1 RESPONSES_API_KEY=... \\
    RESPONSES_MODEL=my-model pytest tests/compliance

``RESPONSES_BASE_URL`` is the API root including ``/v1``; ``RESPONSES_API_KEY`` may be
left unset for an open server; without ``RESPONSES_MODEL`` the first model that
``GET /models`` lists is used; ``RESPONSES_TIMEOUT`` (seconds, default 120) bounds each
request and each wait. With ``RESPONSES_BASE_URL`` unset the suite asks pytest for a
``local_responses_deployment`` fixture (this project's CI provides one) or skips.

It imports nothing from the server, only the tests' shared helpers (``tests/support``:
the strict SDK client, the SSE reader, the error and waiting helpers, the Open Responses
checks); it needs pytest, the official ``openai`` SDK (used in strict mode,
``_strict_response_validation=True``, so every body and event must parse in the SDK's
own models), ``openresponses-types`` (the Open Responses specification's models: every
response object the deployment returns, in a body or in an event, and every event must
conform to them as well, timestamps in whole seconds; see
``tests/support/open_responses.py`` for where the two disagree) and ``httpx-sse`` for the
raw framing checks. The assertions do not depend on what the model writes, only on the
protocol: event order, sequence numbers, deltas that join to the final text, stored
objects, error shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from types import EllipsisType
from typing import Any

import httpx
import openai
import pydantic
import pytest
from httpx_sse import connect_sse
from openai.types.responses import ResponseStreamEvent

from tests.compliance.deployment import Deployment, check_wire_timestamps
from tests.support.errors import assert_openai_error
from tests.support.events import joined_text, sdk_events
from tests.support.open_responses import spec_event
from tests.support.sdk import strict_sdk
from tests.support.sse import read_sse
from tests.support.waiting import wait_until

TERMINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}
FINISHED = {"completed", "incomplete"}  # short max_output_tokens may end a reply early
FINAL_STATUSES = {"completed", "incomplete", "failed", "cancelled"}
SHORT = 32  # max_output_tokens for replies whose content does not matter


# -- a stream checker (independent of any server's own) -------------------------------

_event_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def check_stream(events: Sequence[dict[str, Any]], *, resumed_after: int | None = None
                 ) -> dict[str, Any] | None:
    """Assert the Responses event protocol; returns the final response (None when the
    events are a resumed tail).

    Every event parses in the SDK's strict models and conforms to the Open Responses
    spec (``openresponses-types``); sequence numbers count up by one
    (from 0, or from ``resumed_after + 1``); ``response.created`` comes first, then
    ``response.queued`` (background only) and ``response.in_progress``; output items are
    added and done in pairs, one at a time, at increasing ``output_index``; content
    parts nest in their item; text deltas (answer and reasoning) join to the ``.done``
    text and to the final response's text; function-call argument deltas (custom tool
    call input deltas) join to the ``.done`` arguments (input) and the item's; exactly
    one terminal event, last.
    """
    assert events, "no events"
    for event in events:
        _event_adapter.validate_python(event)
        spec_event(event)
    numbers = [event["sequence_number"] for event in events]
    first = 0 if resumed_after is None else resumed_after + 1
    assert numbers == list(range(first, first + len(events))), numbers
    types = [event["type"] for event in events]
    terminals = [t for t in types if t in TERMINAL_EVENTS]
    if resumed_after is None or terminals:
        assert len(terminals) == 1 and types[-1] == terminals[0], types[-4:]
    if resumed_after is not None:
        return None
    assert types[0] == "response.created", types[:3]
    start = types[1:3] if types[1] == "response.queued" else types[1:2]
    assert start[-1] == "response.in_progress" or "error" in types[:4], types[:4]

    open_item: dict[str, Any] | None = None
    done_items: list[dict[str, Any]] = []
    texts: dict[tuple[str, int], list[str]] = {}
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert open_item is None, "two output items open at once"
            assert event["output_index"] == len(done_items)
            open_item = event["item"]
        elif kind == "response.output_item.done":
            assert open_item is not None and event["item"]["id"] == open_item["id"]
            assert event["output_index"] == len(done_items)
            done_items.append(event["item"])
            open_item = None
        elif kind.startswith(("response.content_part.", "response.output_text.",
                              "response.reasoning_text.")):
            assert open_item is not None and event["item_id"] == open_item["id"], kind
            key = (event["item_id"], event["content_index"])
            if kind == "response.content_part.added":
                assert key not in texts, key
                texts[key] = []
            elif kind.endswith("_text.delta"):
                texts[key].append(event["delta"])
            elif kind.endswith("_text.done"):
                assert "".join(texts[key]) == event["text"]
            elif kind == "response.content_part.done" and event["part"]["type"] in (
                    "output_text", "reasoning_text"):
                assert "".join(texts[key]) == event["part"]["text"]
        elif kind.startswith(("response.function_call_arguments.",
                              "response.custom_tool_call_input.")):
            assert open_item is not None and event["item_id"] == open_item["id"], kind
            custom = kind.startswith("response.custom_tool_call_input.")
            assert open_item["type"] == ("custom_tool_call" if custom else "function_call")
            key = (event["item_id"], -1)
            if kind.endswith(".delta"):
                texts.setdefault(key, []).append(event["delta"])
            else:
                done = event["input"] if custom else event["arguments"]
                assert "".join(texts.get(key, [])) == done
    final: dict[str, Any] = events[-1]["response"]
    status = {"response.completed": {"completed"},
              "response.incomplete": {"incomplete", "cancelled"},
              "response.failed": {"failed"}}[types[-1]]
    assert final["status"] in status, (types[-1], final["status"])
    if types[-1] != "response.failed":
        assert open_item is None, "an output item was left open"
        assert [item["id"] for item in final["output"]] == [i["id"] for i in done_items]
        for item in [*done_items, *final["output"]]:
            for index, part in enumerate(item.get("content") or ()):
                if part["type"] in ("output_text", "reasoning_text"):
                    assert "".join(texts[(item["id"], index)]) == part["text"]
            if item["type"] == "function_call":
                assert "".join(texts.get((item["id"], -1), [])) == item["arguments"]
            if item["type"] == "custom_tool_call":
                assert "".join(texts.get((item["id"], -1), [])) == item["input"]
    return final


def read_raw_stream(client: httpx.Client, method: str, path: str, **kwargs: Any
                    ) -> list[dict[str, Any]]:
    """Events of an SSE response with the framing checked: ``event:`` equals the
    payload's ``type``, never an ``id:`` or ``retry:`` field (the openai SDK's decoder
    breaks on them), nothing after ``data: [DONE]`` (which a deployment may leave out)."""
    with connect_sse(client, method, path, **kwargs) as source:
        events = read_sse(source, require_done=False)
    for event in events:
        if isinstance(event.get("response"), dict):
            check_wire_timestamps(event["response"])
    return events


def message_text(response: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for item in response["output"]
                   if item["type"] == "message" for part in item["content"])


def assert_error_shape(response: httpx.Response, statuses: Iterable[int],
                       param: str | EllipsisType | None = ...) -> dict[str, Any]:
    """An OpenAI error: ``{"error": {"message", "type", "param", "code"}}`` (a deployment
    may add fields); ``param`` checked unless ``...``."""
    return assert_openai_error(response, statuses, param=param, exact=False)


def create_background(sdk: openai.OpenAI, **params: Any) -> Any:
    """A background response, or a clean skip where the deployment refuses background."""
    try:
        return sdk.responses.create(background=True, store=True, **params)
    except openai.BadRequestError as exc:
        pytest.skip(f"the deployment refuses background responses: {exc.message}")


# -- create, stream, retrieve ----------------------------------------------------------

def test_models_lists_the_model(sdk: openai.OpenAI, model: str) -> None:
    assert model in [m.id for m in sdk.models.list()]


def test_create(sdk: openai.OpenAI, model: str) -> None:
    response = sdk.responses.create(model=model, input="Say hello.", max_output_tokens=SHORT)
    assert response.object == "response" and response.id
    assert response.status in FINISHED and response.error is None
    assert response.output, "no output items"
    assert any(item.type == "message" for item in response.output)
    assert response.usage is not None
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    if response.status == "incomplete":
        assert response.incomplete_details is not None


def test_create_echoes_parameters(sdk: openai.OpenAI, model: str) -> None:
    response = sdk.responses.create(
        model=model, input="Say hello.", instructions="Answer briefly.",
        metadata={"suite": "compliance"}, temperature=0.5, top_p=0.9,
        max_output_tokens=SHORT, store=True)
    assert response.instructions == "Answer briefly."
    assert response.metadata == {"suite": "compliance"}
    assert response.temperature == 0.5 and response.top_p == 0.9
    assert response.max_output_tokens == SHORT
    assert response.store is True and response.background is False
    assert response.previous_response_id is None


def test_stream_with_the_sdk(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="Say hello.",
                              max_output_tokens=SHORT) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["status"] in FINISHED
    assert joined_text(events) == message_text(final)
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] in ("queued", "in_progress")


def test_stream_raw_framing(http: httpx.Client, model: str) -> None:
    events = read_raw_stream(http, "POST", "responses", json={
        "model": model, "input": "Say hello.", "stream": True, "max_output_tokens": SHORT})
    final = check_stream(events)
    assert final is not None and joined_text(events) == message_text(final)


def test_retrieve(sdk: openai.OpenAI, model: str) -> None:
    created = sdk.responses.create(model=model, input="Say hello.", max_output_tokens=SHORT)
    retrieved = sdk.responses.retrieve(created.id)
    assert retrieved.id == created.id and retrieved.status == created.status
    assert retrieved.output_text == created.output_text
    assert [item.id for item in retrieved.output] == [item.id for item in created.output]


def test_retrieve_streamed_response(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="Say hello.",
                              max_output_tokens=SHORT) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None
    retrieved = sdk.responses.retrieve(final["id"])
    assert retrieved.status == final["status"]
    assert retrieved.output_text == message_text(final)


def test_store_false_is_not_retrievable(sdk: openai.OpenAI, model: str) -> None:
    created = sdk.responses.create(model=model, input="Say hello.", store=False,
                                   max_output_tokens=SHORT)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)


# -- delete, input items ------------------------------------------------------------

def test_delete(sdk: openai.OpenAI, http: httpx.Client, model: str) -> None:
    created = sdk.responses.create(model=model, input="Say hello.", max_output_tokens=SHORT)
    deleted = http.delete(f"responses/{created.id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    assert_error_shape(http.delete(f"responses/{created.id}"), {404})
    assert_error_shape(http.get(f"responses/{created.id}/input_items"), {404})


def test_input_items_of_a_string_input(sdk: openai.OpenAI, model: str) -> None:
    created = sdk.responses.create(model=model, input="Say hello.", max_output_tokens=SHORT)
    page = sdk.responses.input_items.list(created.id)
    assert len(page.data) == 1 and page.has_more is False
    item = page.data[0]
    assert item.type == "message" and item.role == "user"  # type: ignore[union-attr]
    assert item.content[0].text == "Say hello."  # type: ignore[union-attr]


def test_input_items_paging(sdk: openai.OpenAI, http: httpx.Client, model: str) -> None:
    created = sdk.responses.create(model=model, max_output_tokens=SHORT, input=[
        {"role": "user", "content": "First message."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Say hello."},
    ])
    url = f"responses/{created.id}/input_items"
    asc = http.get(url, params={"order": "asc"}).json()
    assert asc["object"] == "list" and asc["has_more"] is False
    ids = [item["id"] for item in asc["data"]]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert [item["role"] for item in asc["data"]] == ["user", "assistant", "user"]
    assert (asc["first_id"], asc["last_id"]) == (ids[0], ids[-1])
    desc = http.get(url).json()  # the default order is desc
    assert [item["id"] for item in desc["data"]] == ids[::-1]
    first = http.get(url, params={"order": "asc", "limit": 1}).json()
    assert [item["id"] for item in first["data"]] == ids[:1] and first["has_more"] is True
    rest = http.get(url, params={"order": "asc", "limit": 2, "after": ids[0]}).json()
    assert [item["id"] for item in rest["data"]] == ids[1:] and rest["has_more"] is False
    walked = [item.id for item in sdk.responses.input_items.list(created.id, order="asc",
                                                                  limit=1)]
    assert walked == ids
    for limit in (0, 101):
        assert_error_shape(http.get(url, params={"limit": limit}), {400}, param="limit")


# -- conversation state ----------------------------------------------------------------

def test_previous_response_id(sdk: openai.OpenAI, model: str) -> None:
    first = sdk.responses.create(model=model, input="My name is Ada. Say hello.",
                                 max_output_tokens=SHORT)
    second = sdk.responses.create(model=model, input="Say hello again.",
                                  previous_response_id=first.id, max_output_tokens=SHORT)
    assert second.previous_response_id == first.id
    assert second.status in FINISHED and second.id != first.id
    with sdk.responses.stream(model=model, input="Once more.", previous_response_id=second.id,
                              max_output_tokens=SHORT) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["previous_response_id"] == second.id


def test_unknown_previous_response(http: httpx.Client, model: str) -> None:
    response = http.post("responses", json={"model": model, "input": "Say hello.",
                                            "previous_response_id": "resp_does_not_exist"})
    error = assert_error_shape(response, {400, 404}, param="previous_response_id")
    assert error["code"] == "previous_response_not_found"


# -- background ----------------------------------------------------------------------

def test_background_completes(sdk: openai.OpenAI, deployment: Deployment, model: str) -> None:
    created = create_background(sdk, model=model, input="Say hello.",
                                max_output_tokens=SHORT)
    assert created.background is True and created.status in ("queued", "in_progress")
    wait_until(lambda: sdk.responses.retrieve(created.id).status in FINAL_STATUSES,
               deployment.timeout, "the background response to finish", max_interval=0.5)
    final = sdk.responses.retrieve(created.id)
    assert final.status in FINISHED
    # Its events can be streamed again from the start, and from after any of them.
    with sdk.responses.retrieve(created.id, stream=True) as stream:
        events = sdk_events(stream)
    replayed = check_stream(events)
    assert replayed is not None and replayed["id"] == created.id
    assert [e["type"] for e in events[:3]] == [
        "response.created", "response.queued", "response.in_progress"]
    with sdk.responses.stream(response_id=created.id, starting_after=2) as resumed:
        tail = sdk_events(resumed)
    check_stream(tail, resumed_after=2)
    assert [e["sequence_number"] for e in tail] == [e["sequence_number"] for e in events[3:]]


def test_background_cancel(sdk: openai.OpenAI, model: str) -> None:
    created = create_background(
        sdk, model=model, max_output_tokens=4000,
        input="Write a long story about a lighthouse keeper, at least 2000 words.")
    cancelled = sdk.responses.cancel(created.id)
    assert cancelled.id == created.id
    assert cancelled.status in FINAL_STATUSES
    if cancelled.status != "cancelled":
        pytest.skip(f"the response finished ({cancelled.status}) before it could be cancelled")
    # Nothing may write to the response once it is over (a late result must not overwrite
    # the cancel): its event stream ends only then.
    with sdk.responses.retrieve(created.id, stream=True) as stream:
        for _ in stream:
            pass
    assert sdk.responses.retrieve(created.id).status == "cancelled"
    again = sdk.responses.cancel(created.id)
    assert again.status == "cancelled"
    assert [item.id for item in again.output] == [item.id for item in cancelled.output]


def test_cancel_foreground_is_refused(sdk: openai.OpenAI, http: httpx.Client, model: str
                                      ) -> None:
    created = sdk.responses.create(model=model, input="Say hello.", max_output_tokens=SHORT)
    assert_error_shape(http.post(f"responses/{created.id}/cancel"), {400})


def test_background_without_store(http: httpx.Client, model: str) -> None:
    response = http.post("responses", json={"model": model, "input": "Say hello.",
                                            "background": True, "store": False})
    assert_error_shape(response, {400}, param="background")


# -- errors --------------------------------------------------------------------------

@pytest.mark.parametrize("fields, param", [
    ({"unknown_field": 1}, "unknown_field"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 2}, "top_p"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"input": 5}, "input"),
    ({"metadata": {f"key{n}": "v" for n in range(17)}}, "metadata"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"text": {"format": {"type": "text", "unknown_field": 1}}}, "text.format.unknown_field"),
    ({"input": [{"role": "wizard", "content": "hello"}]}, "input[0].role"),
])
def test_bad_request_error_shape(http: httpx.Client, model: str, fields: dict[str, Any],
                                 param: str) -> None:
    body = {"model": model, "input": "Say hello.", **fields}
    assert_error_shape(http.post("responses", json=body), {400}, param=param)


def test_missing_model(http: httpx.Client) -> None:
    assert_error_shape(http.post("responses", json={"input": "Say hello."}), {400},
                       param="model")


def test_unknown_model(http: httpx.Client) -> None:
    response = http.post("responses", json={"model": "no-such-model-anywhere",
                                            "input": "Say hello."})
    error = assert_error_shape(response, {400, 404}, param="model")
    assert error["code"] == "model_not_found"


@pytest.mark.parametrize("content", [b"{not json", b'{"model": "m", "input": "\xff"}', b""])
def test_unparseable_body(http: httpx.Client, content: bytes) -> None:
    response = http.post("responses", content=content,
                         headers={"content-type": "application/json"})
    assert_error_shape(response, {400})


@pytest.mark.parametrize("content_type", ["text/plain;charset=json", "text/plain", None])
def test_a_body_that_is_not_json_creates_nothing(http: httpx.Client, model: str,
                                                 content_type: str | None) -> None:
    """What a web page may send cross-site without a CORS preflight must not act."""
    body = json.dumps({"model": model, "input": "Say hello.", "max_output_tokens": SHORT})
    headers = {} if content_type is None else {"content-type": content_type}
    response = http.post("responses", content=body.encode(), headers=headers)
    assert_error_shape(response, {400, 415})


@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_tool_parameters_are_a_400(http: httpx.Client, model: str,
                                                 depth: int) -> None:
    deep = '{"type": "object", "properties": {"a": ' * depth + "{}" + "}}" * depth
    body = ('{"model": ' + json.dumps(model) + ', "input": "Say hello.", "tools": '
            '[{"type": "function", "name": "f", "parameters": ' + deep + "}]}")
    response = http.post("responses", content=body.encode(),
                         headers={"content-type": "application/json"})
    assert_error_shape(response, {400})


def test_unknown_response(http: httpx.Client) -> None:
    assert_error_shape(http.get("responses/resp_does_not_exist"), {404})


def test_unknown_route(http: httpx.Client) -> None:
    assert_error_shape(http.get("no_such_endpoint"), {404})


def test_wrong_api_key(deployment: Deployment, model: str) -> None:
    if not deployment.api_key:
        pytest.skip("the deployment is open (no RESPONSES_API_KEY)")
    with httpx.Client(base_url=deployment.base_url + "/", timeout=deployment.timeout) as bad:
        response = bad.post("responses", json={"model": model, "input": "Say hello."},
                            headers={"authorization": "Bearer not-the-key"})
    assert_error_shape(response, {401})
    with strict_sdk(deployment.base_url, api_key="not-the-key") as client, \
            pytest.raises(openai.AuthenticationError):
        client.responses.create(model=model, input="Say hello.")


# -- function tools and reasoning ------------------------------------------------------

WEATHER_TOOL: dict[str, Any] = {
    "type": "function", "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True,
}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_forced_function_call(sdk: openai.OpenAI, model: str, choice: Any) -> None:
    with sdk.responses.stream(model=model, input="What is the weather in Paris?",
                              tools=[WEATHER_TOOL], tool_choice=choice,
                              max_output_tokens=200) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["status"] == "completed"
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    assert len(calls) == 1
    [call] = calls
    assert call["name"] == "get_weather" and call["call_id"] and call["status"] == "completed"
    arguments = json.loads(call["arguments"])
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)
    assert final["tool_choice"] == choice


def test_function_call_output_continues_the_conversation(sdk: openai.OpenAI,
                                                         model: str) -> None:
    # The call replayed before its output, as openai-agents sends them.
    response = sdk.responses.create(model=model, max_output_tokens=50, tools=[WEATHER_TOOL],
                                    input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_compliance_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_compliance_1",
         "output": "sunny, 21 C"},
    ])
    assert response.status in ("completed", "incomplete")
    # The model answers, reasons, or calls again: never an empty or unknown output.
    assert response.output
    assert {item.type for item in response.output} <= {"message", "reasoning",
                                                        "function_call"}
    items = sdk.responses.input_items.list(response.id, order="asc").data
    assert [item.type for item in items] == ["message", "function_call",
                                             "function_call_output"]


def test_reasoning_options_are_accepted_and_echoed(sdk: openai.OpenAI, model: str) -> None:
    response = sdk.responses.create(model=model, input="Say hello.", max_output_tokens=30,
                                    reasoning={"effort": "low", "summary": "auto"})
    assert response.reasoning is not None
    assert (response.reasoning.effort, response.reasoning.summary) == ("low", "auto")
    # Reasoning, when the deployment's model produces it, comes before the answer.
    kinds = [item.type for item in response.output]
    assert kinds == sorted(kinds, key=lambda kind: kind != "reasoning"), kinds
    usage = response.usage
    assert usage is not None
    assert 0 <= usage.output_tokens_details.reasoning_tokens <= usage.output_tokens


# -- structured output and logprobs ----------------------------------------------------

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"answer": {"type": "string"}},
    "required": ["answer"], "additionalProperties": False,
}


def test_json_schema_output(sdk: openai.OpenAI, model: str) -> None:
    response = sdk.responses.create(
        model=model, input="What is the capital of France? Answer in JSON.",
        max_output_tokens=60, text={"format": {"type": "json_schema", "name": "answer",
                                               "schema": ANSWER_SCHEMA, "strict": True}})
    assert response.text.format is not None and response.text.format.type == "json_schema"
    echoed = response.text.format.model_dump(by_alias=True)
    assert echoed["name"] == "answer" and echoed["schema"] == ANSWER_SCHEMA
    if response.status == "completed":
        value = json.loads(response.output_text)
        assert isinstance(value, dict) and isinstance(value["answer"], str)


def test_logprobs_in_the_stream_and_the_output(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="Say hello.", max_output_tokens=8,
                              include=["message.output_text.logprobs"],
                              top_logprobs=2) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas and all(e["logprobs"] for e in deltas)
    for logprob in (lp for e in deltas for lp in e["logprobs"]):
        assert isinstance(logprob["logprob"], float) and len(logprob["top_logprobs"]) <= 2
    [part] = [part for item in final["output"] if item["type"] == "message"
              for part in item["content"]]
    assert len(part["logprobs"]) == sum(len(e["logprobs"]) for e in deltas)


# -- what current clients send: Codex CLI's fields, namespace, custom and hosted tools ---

NAMESPACE_TOOL: dict[str, Any] = {
    "type": "namespace", "name": "weather_tools", "description": "Weather lookups.",
    "tools": [{**{k: v for k, v in WEATHER_TOOL.items() if k != "type"},
               "type": "function"}],
}
CUSTOM_TOOL: dict[str, Any] = {"type": "custom", "name": "write_note",
                               "description": "Write a short note, as plain text."}


@pytest.mark.parametrize("client_metadata", ['{"turn": 1}', {"session_id": "compliance",
                                                             "turn_id": "1"}])
def test_codex_request_fields_are_accepted(sdk: openai.OpenAI, model: str,
                                           client_metadata: Any) -> None:
    """Codex CLI's first request: store false with encrypted reasoning asked for, a
    reasoning summary, a prompt cache key, parallel tool calls, its client_metadata (a
    field the SDK has no parameter for) and its headers."""
    with sdk.responses.stream(
            model=model, input=[{"role": "developer", "content": "Answer briefly."},
                                {"role": "user", "content": "Say hello."}],
            store=False, include=["reasoning.encrypted_content"],
            reasoning={"summary": "auto"}, prompt_cache_key="compliance-session",
            parallel_tool_calls=True, tool_choice="auto", tools=[WEATHER_TOOL],
            max_output_tokens=SHORT, extra_body={"client_metadata": client_metadata},
            extra_headers={"session-id": "compliance-session", "originator": "codex_exec",
                           "x-client-request-id": "compliance-session",
                           "x-codex-beta-features": "remote_compaction_v2"}) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["status"] in FINISHED and final["store"] is False
    assert final["prompt_cache_key"] == "compliance-session"
    if "client_metadata" in final:  # a deployment may keep it without echoing it
        assert final["client_metadata"] == client_metadata


def test_namespaced_function_call_names_its_namespace(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="What is the weather in Paris?",
                              tools=[NAMESPACE_TOOL],  # type: ignore[list-item]
                              tool_choice="required", max_output_tokens=200) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["status"] == "completed"
    assert final["tools"][0]["type"] == "namespace"
    [call] = [item for item in final["output"] if item["type"] == "function_call"]
    assert (call["name"], call["namespace"]) == ("get_weather", "weather_tools")
    assert set(json.loads(call["arguments"])) == {"city"}
    # The call replayed with its output continues the conversation (store: false, the
    # whole history, as Codex sends it).
    replay = {key: call[key] for key in ("type", "call_id", "name", "namespace", "arguments")}
    response = sdk.responses.create(model=model, store=False, max_output_tokens=50,
                                    tools=[NAMESPACE_TOOL],  # type: ignore[list-item]
                                    input=[{"role": "user", "content": "Weather in Paris?"},
                                           replay,  # type: ignore[list-item]
                                           {"type": "function_call_output",
                                            "call_id": call["call_id"], "output": "sunny"}])
    assert response.status in FINISHED and response.output


def test_custom_tool_call(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="Write a note that says hello.",
                              tools=[CUSTOM_TOOL],  # type: ignore[list-item]
                              tool_choice={"type": "custom", "name": "write_note"},
                              max_output_tokens=200) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["status"] == "completed"
    assert final["tools"][0]["type"] == "custom"
    [call] = [item for item in final["output"] if item["type"] == "custom_tool_call"]
    assert call["name"] == "write_note" and isinstance(call["input"], str) and call["call_id"]
    response = sdk.responses.create(model=model, max_output_tokens=50,
                                    tools=[CUSTOM_TOOL],  # type: ignore[list-item]
                                    input=[{"role": "user", "content": "Write a note."},
                                           {"type": "custom_tool_call",
                                            "call_id": call["call_id"], "name": "write_note",
                                            "input": call["input"]},
                                           {"type": "custom_tool_call_output",
                                            "call_id": call["call_id"], "output": "saved"}])
    assert response.status in FINISHED and response.output
    items = sdk.responses.input_items.list(response.id, order="asc").data
    assert [item.type for item in items] == ["message", "custom_tool_call",
                                             "custom_tool_call_output"]


def test_hosted_tools_are_accepted_and_echoed(sdk: openai.OpenAI, model: str) -> None:
    """Declared hosted tools (here web search, which Codex declares) are accepted and
    echoed; a deployment may run them, never call them, or refuse them as unsupported."""
    tools = [{"type": "web_search", "external_web_access": False}, WEATHER_TOOL]
    try:
        with sdk.responses.stream(model=model, input="Say hello.", tools=tools,  # type: ignore[arg-type]
                                  max_output_tokens=SHORT) as stream:
            events = sdk_events(stream)
    except openai.BadRequestError as exc:
        assert isinstance(exc.body, dict) and exc.body.get("param") == "tools[0].type", exc
        pytest.skip(f"the deployment refuses hosted tools: {exc.message}")
    final = check_stream(events)
    assert final is not None and final["status"] in FINISHED
    assert [tool["type"] for tool in final["tools"]] == ["web_search", "function"]


# -- stateless agent loops: grammars, sealed reasoning, compaction -------------------------

SERIAL = r"[0-9]{3}-[a-z]{2,8}"


def test_a_forced_custom_tool_with_a_regex_grammar_gets_matching_input(
        sdk: openai.OpenAI, model: str) -> None:
    tool = {"type": "custom", "name": "serial", "description": "A serial number.",
            "format": {"type": "grammar", "syntax": "regex", "definition": SERIAL}}
    with sdk.responses.stream(model=model, input="Make up a serial number.",
                              tools=[tool],  # type: ignore[list-item]
                              tool_choice={"type": "custom", "name": "serial"},
                              max_output_tokens=100) as stream:
        events = sdk_events(stream)
    final = check_stream(events)
    assert final is not None and final["status"] == "completed"
    [call] = [item for item in final["output"] if item["type"] == "custom_tool_call"]
    assert re.fullmatch(SERIAL, call["input"]), call["input"]


def test_encrypted_reasoning_round_trips_or_is_refused(sdk: openai.OpenAI, http: httpx.Client,
                                                       model: str) -> None:
    """With ``include: ["reasoning.encrypted_content"]`` every reasoning item carries its
    sealed content, which goes back in a stateless next turn; a value the deployment did
    not seal is a 400 naming the item."""
    first = sdk.responses.create(model=model, input="Think, then say hi.", store=False,
                                 include=["reasoning.encrypted_content"],
                                 max_output_tokens=SHORT)
    history: list[Any] = [{"role": "user", "content": "Think, then say hi."}]
    for item in first.output:
        if item.type == "reasoning":
            assert item.encrypted_content
        history.append(item.model_dump(exclude_none=True))
    second = sdk.responses.create(model=model, store=False, max_output_tokens=SHORT,
                                  include=["reasoning.encrypted_content"],
                                  input=[*history, {"role": "user", "content": "Again."}])
    assert second.status in FINISHED
    forged = {"type": "reasoning", "summary": [], "encrypted_content": "bm90IHNlYWxlZA"}
    bad = http.post("/responses", json={"model": model, "store": False, "input": [
        {"role": "user", "content": "hi"}, forged, {"role": "user", "content": "again"}]})
    assert_error_shape(bad, [400])


def test_compact_then_continue_statelessly(sdk: openai.OpenAI, model: str) -> None:
    history: list[Any] = [{"role": "user", "content": "My name is Ada."},
                          {"role": "assistant", "content": "Hello Ada."},
                          {"role": "user", "content": "Remember the number 42."}]
    compacted = sdk.responses.compact(model=model, input=history)
    assert compacted.object == "response.compaction" and compacted.id
    assert compacted.output and compacted.output[-1].type == "compaction"
    assert compacted.output[-1].encrypted_content  # type: ignore[union-attr]
    assert compacted.usage.total_tokens > 0
    carried = [item.model_dump(exclude_none=True) for item in compacted.output]
    after = sdk.responses.create(model=model, store=False, max_output_tokens=SHORT,
                                 input=[*carried, {"role": "user", "content": "What is my name?"}])
    assert after.status in FINISHED and after.output
