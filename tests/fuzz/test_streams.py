"""Streams created with generated inputs and options: every event against the spec.

For each generated request (text with newlines, CR, NUL, U+2028, emoji, long runs;
background or not; token limits; logprobs; a forced or scripted function call; a JSON
schema format; an injected engine failure) the test reads the SSE bytes and checks:

* framing: blocks are ``event: <type>`` + ``data: <json>`` with ``event`` equal to the
  payload's ``type``, no ``id:`` or ``retry:`` line, and ``data: [DONE]`` once, last;
* every event's payload against its schema in the spec (event_schema.py) — the same
  check schemathesis makes, but naming the field that fails;
* the event stack (tests/support/events.py: order, sequence numbers, pairs, one terminal
  event) and the openai SDK's own event types in strict mode;
* the echoed text, exactly (the scripted engine says "You said: <input>");
* for background responses, ``GET ?stream=true`` replays the same events, and
  ``starting_after=k`` resumes with the events after k.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import check_stream, joined_text
from tests.support.server import ServerThread
from tests.support.sse import parse_raw_sse

from .conftest import AUTH, MODEL, scaled
from .event_schema import assert_valid_event, problems

EXAMPLES = scaled(30)
# Characters that break naive SSE or JSON handling, mixed into generated text.
AWKWARD = ["\n", "\r\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "😀", "\ufeff", "\\", '"',
           "data: x", "event: y", ": ping", "\t", "[DONE]"]


@pytest.fixture(scope="module")
def http(fuzz_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.base_url + "/v1", headers=AUTH,
                      timeout=30) as client:
        yield client


def texts() -> st.SearchStrategy[str]:
    words = st.one_of(st.text(max_size=12), st.sampled_from(AWKWARD),
                      st.text(min_size=200, max_size=2000))
    # "[[" starts the scripted engine's markers; failure is drawn separately.
    return st.lists(words, max_size=12).map("".join).filter(lambda text: "[[" not in text)


TOOL = {"type": "function", "name": "lookup", "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                       "required": ["q"]}}


@st.composite
def stream_requests(draw: st.DrawFn) -> dict[str, Any]:
    text = draw(texts())
    body: dict[str, Any] = {"model": MODEL, "stream": True}
    kind = draw(st.sampled_from(["text", "text", "call", "forced", "json", "fail"]))
    if kind == "call":
        text += " [[call:lookup]]"
    elif kind == "fail":
        text += " [[fail]]"
    if kind in ("call", "forced"):
        body["tools"] = [TOOL]
    if kind == "forced":
        body["tool_choice"] = draw(st.sampled_from(
            ["required", {"type": "function", "name": "lookup"}]))
    if kind == "json":
        body["text"] = {"format": {"type": "json_schema", "name": "answer", "schema": {
            "type": "object", "properties": {"answer": {"type": "string"}}}}}
    as_list = draw(st.booleans())
    body["input"] = ([{"role": "user", "content": [{"type": "input_text", "text": text}]}]
                     if as_list else text)
    if draw(st.booleans()):
        body["instructions"] = draw(texts())
    if draw(st.booleans()):
        body["max_output_tokens"] = draw(st.integers(1, 40))
    if draw(st.booleans()):
        body["include"] = ["message.output_text.logprobs"]
        body["top_logprobs"] = draw(st.integers(0, 5))
    if draw(st.booleans()):
        body["background"] = True
    if draw(st.booleans()):
        body["metadata"] = draw(st.dictionaries(st.text(max_size=64), st.text(max_size=64),
                                                max_size=4))
    return body


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The events of a complete SSE body, checking the framing rules on the way."""
    events, comments = parse_raw_sse(raw)
    assert set(comments) <= {b": ping"}, comments
    return events


def expected_text(text: str) -> str:
    text = text.strip()
    return f"You said: {text}" if text else "Hello from the scripted engine."


def check_events(events: list[dict[str, Any]], body: dict[str, Any]) -> None:
    for event in events:
        assert_valid_event(event)
    check_stream(events)
    final = events[-1]["response"]
    assert not problems(final, "Response"), problems(final, "Response")
    text = body["input"] if isinstance(body["input"], str) else body["input"][0]["content"][0][
        "text"]
    plain = "tools" not in body and "text" not in body and "[[" not in text
    if plain and final["status"] == "completed":
        assert joined_text(events) == expected_text(text)


@given(body=stream_requests())
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_streamed_events_match_the_spec(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post("/responses", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    check_events(events, body)
    if not body.get("background"):
        return
    response_id = events[0]["response"]["id"]
    replay = http.get(f"/responses/{response_id}", params={"stream": "true"})
    assert replay.status_code == 200, replay.text
    assert sse_events(replay.content) == events
    middle = len(events) // 2
    resumed = http.get(f"/responses/{response_id}",
                       params={"stream": "true", "starting_after": str(middle)})
    assert sse_events(resumed.content) == events[middle + 1:]
    stored = http.get(f"/responses/{response_id}")
    assert stored.json() == events[-1]["response"]
