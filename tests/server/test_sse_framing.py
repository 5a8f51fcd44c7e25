"""The SSE wire format, read below the SDK: with httpx-sse, and byte for byte.

The openai SDK's decoder crashes on an ``id:`` line followed by a comment, on
``event:`` without ``data:``, and on a bare ``retry:`` (RELIABILITY.md, trap 1), so the
framing is asserted exactly: ``event:`` equal to the payload's ``type``, no ``id:`` or
``retry:`` fields, ``data: [DONE]`` last.
"""

from __future__ import annotations

import httpx
from httpx_sse import EventSource, connect_sse

from tests.server.helpers import MODEL, types_of
from tests.support.events import check_stream, joined_text
from tests.support.sse import parse_raw_sse, read_sse


def test_stream_framing_with_httpx_sse(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "frame me please", "stream": True}
    with connect_sse(http, "POST", "/v1/responses", json=body) as source:
        assert source.response.headers["cache-control"] == "no-cache"
        events = read_sse(source)
    check_stream(events)
    assert joined_text(events) == "You said: frame me please"
    assert types_of(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 5,
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]


def test_stream_framing_byte_for_byte(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "line one\nline two \u2028 \U0001f600 \"quoted\"",
            "stream": True}
    response = http.post("/v1/responses", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    raw = response.content
    assert b"\nid:" not in raw and not raw.startswith(b"id:") and b"retry:" not in raw
    assert b"\r" not in raw
    events, comments = parse_raw_sse(raw)
    assert comments == []  # no heartbeat configured on this server
    check_stream(events)
    assert joined_text(events) == "You said: " + body["input"].strip()  # type: ignore[operator]
    # The same bytes through httpx-sse give the same events.
    replayed = httpx.Response(200, headers=response.headers, content=raw)
    assert read_sse(EventSource(replayed)) == events


def test_accept_header_selects_sse(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "by accept"}
    with connect_sse(http, "POST", "/v1/responses", json=body) as source:
        events = read_sse(source)
    check_stream(events)
    assert joined_text(events) == "You said: by accept"


def test_stream_false_wins_over_accept(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={"model": MODEL, "input": "json please",
                                                 "stream": False},
                         headers={"accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] == "completed"


def test_failed_stream_framing(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "break [[fail]] now", "stream": True}
    with connect_sse(http, "POST", "/v1/responses", json=body) as source:
        events = read_sse(source)
    check_stream(events)
    assert types_of(events)[-2:] == ["error", "response.failed"]
    # OpenAI's documented fields at the top, and the same under "error", as OpenAI sends
    # it and the Open Responses spec requires (the SDKs raise APIError on it).
    error = events[-2]
    assert error["error"] == {"type": "server_error", "code": error["code"],
                              "message": error["message"], "param": None}


def test_replay_framing(http: httpx.Client) -> None:
    created = http.post("/v1/responses", json={"model": MODEL, "input": "replay me",
                                               "background": True, "store": True})
    response_id = created.json()["id"]
    with connect_sse(http, "GET", f"/v1/responses/{response_id}",
                     params={"stream": "true"}) as source:
        live = read_sse(source)
    check_stream(live)
    raw = http.get(f"/v1/responses/{response_id}", params={"stream": "true"}).content
    replayed, _ = parse_raw_sse(raw)
    assert replayed == live
