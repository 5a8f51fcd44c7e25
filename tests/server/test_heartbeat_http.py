"""Heartbeats over real HTTP (the cadence itself is tested under MockClock in
tests/runtime): ``response.ping`` events while the engine is silent, numbered in the
stream; in compatibility mode ``: ping`` comments instead, which the strict SDK reads past."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from httpx_sse import connect_sse

from tests.server.helpers import MODEL, aborted, http_client, types_of
from tests.support.events import check_stream, joined_text, sdk_events
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from tests.support.sse import parse_raw_sse, read_sse
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine

PING_INTERVAL = 0.1


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A ping after 0.1 s of silence; tokens every 5 ms."""
    with serve_scripted(tmp_path_factory,
                        ScriptedEngine(model_name=MODEL, token_delay=0.005),
                        responses_ping_interval_seconds=PING_INTERVAL) as server:
        yield server


@pytest.fixture(scope="module")
def compatible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Compatibility mode, a ping after 30 ms of silence, tokens every 100 ms."""
    with serve_scripted(tmp_path_factory,
                        ScriptedEngine(model_name=MODEL, token_delay=0.1),
                        responses_compatibility_mode=True,
                        responses_ping_interval_seconds=0.03) as server:
        yield server


def test_pings_while_the_engine_is_silent(pinging: ServerThread) -> None:
    with http_client(pinging) as http, \
            connect_sse(http, "POST", "/v1/responses",
                        json={"model": MODEL, "input": "[[stall]]", "stream": True}) as source:
        events = read_sse(source, count=8)
    check_stream(events, resumed_after=-1)
    assert types_of(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.ping", "response.ping", "response.ping"]
    assert set(events[-1]) == {"type", "sequence_number"}
    response_id = events[0]["response"]["id"]
    wait_until(lambda: aborted(pinging, response_id), what="engine abort")


def test_no_pings_while_tokens_flow(pinging: ServerThread) -> None:
    with http_client(pinging) as http:
        raw = http.post("/v1/responses", json={"model": MODEL, "input": "a b c d e f",
                                               "stream": True}).content
    events, comments = parse_raw_sse(raw)
    check_stream(events)
    assert "response.ping" not in types_of(events) and comments == []


def test_compatibility_pings_are_comments(compatible: ServerThread) -> None:
    with http_client(compatible) as http:
        raw = http.post("/v1/responses", json={"model": MODEL, "input": "a b",
                                               "stream": True}).content
    events, comments = parse_raw_sse(raw)
    check_stream(events)
    assert len(comments) >= 2 and b": ping\n\n" in raw
    assert "response.ping" not in types_of(events)
    assert joined_text(events) == "You said: a b"


def test_strict_sdk_reads_past_comment_pings(compatible: ServerThread) -> None:
    with strict_sdk(compatible) as client, \
            client.responses.stream(model=MODEL, input="slow reply") as stream:
        events = sdk_events(stream)
        final = stream.get_final_response()
    check_stream(events)
    assert final.output_text == "You said: slow reply"
