"""Heartbeats over real HTTP (the cadence itself is tested under MockClock in
tests/runtime): by default ``: ping`` comments while the engine is silent, which every
client reads past, the strict SDK included; ``response.ping`` events, numbered in the
stream, for a request that asks with ``X-Responses-Ping-Events: true`` or on a server
started with ``--responses-ping-events`` (a request's ``false`` then opts out).

The real clients (the TypeScript SDK's stream helper, the Vercel AI SDK, openai-agents)
are driven through heartbeats in tests/clients/."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from httpx_sse import connect_sse

from tests.server.helpers import MODEL, aborted, http_client, types_of
from tests.support.errors import assert_openai_error
from tests.support.events import check_stream, joined_text, sdk_events
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from tests.support.sse import parse_raw_sse, read_sse
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine

PING_INTERVAL = 0.1
PING_EVENTS = {"x-responses-ping-events": "true"}


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A heartbeat after 0.1 s of silence; tokens every 5 ms."""
    with serve_scripted(tmp_path_factory,
                        ScriptedEngine(model_name=MODEL, token_delay=0.005),
                        responses_ping_interval_seconds=PING_INTERVAL) as server:
        yield server


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A heartbeat after 30 ms of silence, tokens every 100 ms: every gap has one."""
    with serve_scripted(tmp_path_factory,
                        ScriptedEngine(model_name=MODEL, token_delay=0.1),
                        responses_ping_interval_seconds=0.03) as server:
        yield server


@pytest.fixture(scope="module")
def ping_events_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """--responses-ping-events: response.ping events unless a request says false."""
    with serve_scripted(tmp_path_factory,
                        ScriptedEngine(model_name=MODEL, token_delay=0.1),
                        responses_ping_interval_seconds=0.03,
                        responses_ping_events=True) as server:
        yield server


def raw_stream(server: ServerThread, text: str, headers: dict[str, str] | None = None
               ) -> bytes:
    with http_client(server) as http:
        response = http.post("/v1/responses", headers=headers,
                             json={"model": MODEL, "input": text, "stream": True})
        assert response.status_code == 200, response.text
        return response.content


def test_pings_are_comments_while_the_engine_is_silent(pinging: ServerThread) -> None:
    with http_client(pinging) as http, http.stream(
            "POST", "/v1/responses",
            json={"model": MODEL, "input": "[[stall]]", "stream": True}) as response:
        raw = b""
        for chunk in response.iter_raw():
            raw += chunk
            if raw.count(b": ping\n\n") >= 3:
                break
    _, _, tail = raw.partition(b"event: response.output_text.delta\n")
    assert tail, raw[-300:]
    # After the first token the engine is silent: only comment frames follow it.
    assert [block for block in tail.split(b"\n\n")[1:] if block] == [b": ping"] * 3
    assert b"response.ping" not in raw
    created = json.loads(raw.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    response_id = created["response"]["id"]
    wait_until(lambda: aborted(pinging, response_id), what="engine abort")


def test_no_pings_while_tokens_flow(pinging: ServerThread) -> None:
    events, comments = parse_raw_sse(raw_stream(pinging, "a b c d e f"))
    check_stream(events)
    assert "response.ping" not in types_of(events) and comments == []


def test_every_gap_gets_a_comment_and_the_events_stay_numbered(slow: ServerThread) -> None:
    events, comments = parse_raw_sse(raw_stream(slow, "a b"))
    check_stream(events)  # sequence numbers 0, 1, 2 … with no gap for the comments
    assert len(comments) >= 2 and set(comments) == {b": ping"}
    assert "response.ping" not in types_of(events)
    assert joined_text(events) == "You said: a b"


@pytest.mark.parametrize("helper", [True, False], ids=["stream-helper", "create-stream"])
def test_the_strict_sdk_reads_past_comment_pings(slow: ServerThread, helper: bool) -> None:
    with strict_sdk(slow) as client:
        if helper:
            with client.responses.stream(model=MODEL, input="slow reply") as stream:
                events = sdk_events(stream)
                text = stream.get_final_response().output_text
        else:
            events = sdk_events(client.responses.create(model=MODEL, input="slow reply",
                                                        stream=True))
            text = joined_text(events)
    check_stream(events)
    assert text == "You said: slow reply"


def test_the_lenient_sdk_reads_past_comment_pings(slow: ServerThread) -> None:
    with openai.OpenAI(base_url=slow.base_url + "/v1", api_key="x", max_retries=0) as client:
        events = sdk_events(client.responses.create(model=MODEL, input="slow reply",
                                                    stream=True))
    check_stream(events)
    assert joined_text(events) == "You said: slow reply"


def test_a_request_asks_for_ping_events(pinging: ServerThread) -> None:
    with http_client(pinging) as http, \
            connect_sse(http, "POST", "/v1/responses", headers=PING_EVENTS,
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


def test_ping_events_are_numbered_between_the_others(slow: ServerThread) -> None:
    events, comments = parse_raw_sse(raw_stream(slow, "a b", PING_EVENTS))
    check_stream(events)
    assert comments == [] and types_of(events).count("response.ping") >= 2
    assert joined_text(events) == "You said: a b"


def test_the_server_flag_makes_ping_events_the_default(ping_events_server: ServerThread
                                                        ) -> None:
    events, comments = parse_raw_sse(raw_stream(ping_events_server, "a b"))
    check_stream(events)
    assert comments == [] and types_of(events).count("response.ping") >= 2
    # A request opts out of them.
    events, comments = parse_raw_sse(raw_stream(ping_events_server, "a b",
                                                {"x-responses-ping-events": "false"}))
    check_stream(events)
    assert "response.ping" not in types_of(events) and len(comments) >= 2


def test_a_bad_ping_events_header_is_refused(pinging: ServerThread) -> None:
    with http_client(pinging) as http:
        response = http.post("/v1/responses", headers={"x-responses-ping-events": "sometimes"},
                             json={"model": MODEL, "input": "x", "stream": True})
    error = assert_openai_error(response, 400, param=None, code="invalid_value")
    assert "X-Responses-Ping-Events" in error["message"]
