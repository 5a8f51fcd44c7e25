"""Each defect the fuzzers found, as one fixed example (see the ``fix:`` commits)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import ServerThread

from .conftest import AUTH, MODEL
from .event_schema import assert_valid_event, problems
from .test_streams import TOOL, sse_events


@pytest.fixture(scope="module")
def http(fuzz_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.base_url + "/v1", headers=AUTH,
                      timeout=30) as client:
        yield client


def refused(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.text


def create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/responses", json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_refusal_part_only_in_assistant_messages(http: httpx.Client) -> None:
    # It was stored, then listed as an input message the spec does not allow.
    refusal = [{"type": "refusal", "refusal": "no"}]
    refused(http.post("/responses", json={"model": MODEL, "input": [
        {"role": "user", "content": refusal}]}), "input[0].content[0].type")
    create(http, input=[{"role": "assistant", "content": refusal},
                        {"role": "user", "content": "and now?"}])


@pytest.mark.parametrize(("summary", "param"), [
    ([[]], "input[0].summary[0]"),
    ([{"type": "reasoning_text", "text": "x"}], "input[0].summary[0].type"),
    ([{"type": "summary_text"}], "input[0].summary[0].text"),
    ([{"type": "summary_text", "text": "x", "extra": 1}], "input[0].summary[0].extra"),
])
def test_reasoning_summary_parts_are_checked(http: httpx.Client, summary: Any, param: str
                                             ) -> None:
    # Anything was stored and listed back verbatim.
    refused(http.post("/responses", json={"model": MODEL, "input": [
        {"type": "reasoning", "summary": summary}]}), param)


def test_stored_input_items_match_the_spec(http: httpx.Client) -> None:
    reasoning = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}],
                 "content": [{"type": "reasoning_text", "text": "thinking"}]}
    created = create(http, input=[
        {"role": "user", "content": "q"}, reasoning,
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"}])
    page = http.get(f"/responses/{created['id']}/input_items", params={"order": "asc"}).json()
    assert not problems(page, "ResponseItemList"), problems(page, "ResponseItemList")
    assert page["data"][1]["content"] == reasoning["content"]


def test_get_checks_its_query_without_stream(http: httpx.Client) -> None:
    # starting_after / include_obfuscation / include were read only with stream=true.
    response_id = create(http, input="hi")["id"]
    refused(http.get(f"/responses/{response_id}", params={"starting_after": "1.5"}),
            "starting_after")
    refused(http.get(f"/responses/{response_id}", params={"include_obfuscation": "x"}),
            "include_obfuscation")
    refused(http.get(f"/responses/{response_id}", params={"include": "bogus"}), "include")
    refused(http.get(f"/responses/{response_id}/input_items", params={"include": "bogus"}),
            "include")
    assert http.get(f"/responses/{response_id}", params={
        "include": "message.output_text.logprobs", "include_obfuscation": "false",
        "starting_after": "3"}).status_code == 200


def test_function_call_arguments_done_names_the_function(http: httpx.Client) -> None:
    response = http.post("/responses", json={"model": MODEL, "input": "[[call:lookup]]",
                                             "tools": [TOOL], "stream": True})
    events = sse_events(response.content)
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done and done[0]["name"] == "lookup"
    for event in events:
        assert_valid_event(event)
