"""WebSocket mode (``GET /v1/responses`` upgraded): the upgrade's gateway, lanes, errors,
disconnects, and the real SDK's ``responses.connect()`` / ``ResponsesWebSocketSession``
(sync and async) with every event parsed by the SDK's models."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import trio
from openai.lib.responses_websocket import (
    AsyncResponsesWebSocketSession,
    ResponsesWebSocketSession,
)
from websockets.exceptions import InvalidStatus

from tests.reliability.socket_wire import SocketWire
from tests.support.events import as_dict
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, run_ended, serve_scripted
from tests.support.waiting import wait_until
from tests.support.websocket import (
    KEY,
    SDK_LIMITS,
    check_lane,
    create_event,
    is_terminal,
    open_socket,
    parse_server_event,
    receive,
    send,
    socket_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with socket_server(tmp_path_factory, long_words=2000, token_delay=0.002) as running:
        yield running


create = create_event


def read_until_terminal(socket: Any, stream_id: str | None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or not is_terminal(events[-1]):
        event = receive(socket)
        assert event.get("stream_id") == stream_id, event
        events.append(event)
    return events


# -- the upgrade ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/v1/models", "/health", "/v1/responses/x"])
def test_upgrade_where_there_is_no_websocket_is_refused_cleanly(
        server: ServerThread, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, KEY, path=path)
    answer = refused.value.response
    assert answer.status_code == 404
    error = json.loads(bytes(answer.body or b""))["error"]
    assert error["code"] == "unknown_url" and error["type"] == "invalid_request_error"
    assert answer.headers["x-request-id"].startswith("req_")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("key", [None, "wrong"])
def test_a_bad_key_is_refused_at_the_upgrade(server: ServerThread, key: str | None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, key)
    assert refused.value.response.status_code == 401
    error = json.loads(bytes(refused.value.response.body or b""))["error"]
    assert error["code"] == "invalid_api_key"


def test_the_upgrade_answers_with_the_gateway_headers(server: ServerThread) -> None:
    with open_socket(server, KEY, headers={"x-request-id": "my-request",
                                           "openai-organization": "org-1"}) as socket:
        headers = socket.response.headers
        assert headers["x-request-id"] == "my-request"
        assert headers["openai-organization"] == "org-1"
        assert headers["openai-version"] == "2020-10-01"


def test_rate_limits_apply_to_the_upgrade_and_to_each_create(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    with serve_scripted(tmp_path_factory, api_keys=[KEY],
                        rate_limit_requests_per_minute=2) as limited:
        with open_socket(limited, KEY) as socket:
            assert socket.response.headers["x-ratelimit-limit-requests"] == "2"
            send(socket, create("one", "a"))
            events = read_until_terminal(socket, "a")
            assert events[-1]["type"] == "response.completed"
            send(socket, create("two", "a"))
            refused = receive(socket)
            assert refused["type"] == "error" and refused["status"] == 429
            assert refused["stream_id"] == "a"
        with pytest.raises(InvalidStatus) as again:
            open_socket(limited, KEY)
        assert again.value.response.status_code == 429
        assert "x-ratelimit-remaining-requests" in again.value.response.headers


# -- client events -------------------------------------------------------------------


def test_bad_client_events_are_error_events_and_the_socket_goes_on(
        server: ServerThread) -> None:
    with open_socket(server, KEY) as socket:
        socket.send("{not json")
        assert receive(socket)["error"]["code"] == "invalid_json"
        send(socket, {"type": "response.nope"})
        assert receive(socket)["error"]["code"] == "unknown_event_type"
        send(socket, create("x", stream_id="bad id!"))
        error = receive(socket)
        assert error["error"]["code"] == "invalid_stream_id" and "stream_id" not in error
        send(socket, create("x", "a", temperature=9))
        error = receive(socket)
        assert (error["type"], error["status"], error["stream_id"]) == ("error", 400, "a")
        assert error["error"]["param"] == "temperature"
        send(socket, create("x", "a", background=True))
        assert receive(socket)["error"]["param"] == "background"
        send(socket, create("still here", "a"))
        events = read_until_terminal(socket, "a")
        check_lane(events, "a")
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == \
            "You said: still here"


def test_a_create_on_a_busy_lane_is_an_error_for_that_lane_only(server: ServerThread) -> None:
    with open_socket(server, KEY) as socket:
        send(socket, create("[[long]]", "a"))
        send(socket, create("again", "a"))
        send(socket, create("other lane", "b"))
        lanes: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        busy = None
        while len([s for s, events in lanes.items() if events and is_terminal(events[-1])]) < 2:
            event = receive(socket)
            if event["type"] == "error":
                busy = event
                continue
            lanes[event.get("stream_id")].append(event)
        assert busy is not None and busy["stream_id"] == "a"
        assert busy["error"]["code"] == "stream_busy"
        check_lane(lanes["a"], "a")
        check_lane(lanes["b"], "b")
        assert lanes["a"][-1]["type"] == lanes["b"][-1]["type"] == "response.completed"


def test_a_socket_response_is_retrieved_cancelled_and_continued_over_http(
        server: ServerThread) -> None:
    with open_socket(server, KEY) as socket, strict_sdk(server, KEY) as client:
        send(socket, create("[[long]]", "c"))
        created = receive(socket)
        response_id = created["response"]["id"]
        while receive(socket)["type"] != "response.output_text.delta":
            pass
        assert client.responses.retrieve(response_id).status == "in_progress"
        cancelled = client.responses.cancel(response_id)
        assert cancelled.status == "cancelled"
        rest = read_until_terminal(socket, "c")
        assert rest[-1]["type"] == "response.incomplete"
        assert rest[-1]["response"]["status"] == "cancelled"
        assert run_ended(server, response_id)
        assert response_id in engine_of(server).aborted
        # Over HTTP, the socket's response is a previous response like any other.
        follow_up = client.responses.create(model="scripted", input="next",
                                            previous_response_id=response_id)
        assert follow_up.output_text == "You said: next"
        # And back on a socket.
        send(socket, create("on the socket", "c", previous_response_id=follow_up.id))
        events = read_until_terminal(socket, "c")
        assert events[-1]["response"]["previous_response_id"] == follow_up.id


def test_closing_the_socket_aborts_every_lane(server: ServerThread) -> None:
    lanes = ["l0", "l1", "l2", "l3"]
    ids: dict[str, str] = {}
    with open_socket(server, KEY) as socket:
        for lane in lanes:
            send(socket, create("[[stall]]", lane))
        started: set[str] = set()
        while len(started) < len(lanes):
            event = receive(socket)
            if event["type"] == "response.created":
                ids[event["stream_id"]] = event["response"]["id"]
            elif event["type"] == "response.output_text.delta":
                started.add(event["stream_id"])
    # The socket is closed: every lane's run ends as an HTTP disconnect does.
    wait_until(lambda: all(run_ended(server, rid) for rid in ids.values()), 10,
               "every run ended")
    aborted = set(engine_of(server).aborted)
    assert set(ids.values()) <= aborted
    with strict_sdk(server, KEY) as client:
        for response_id in ids.values():
            assert client.responses.retrieve(response_id).status == "cancelled"


# -- the SDK -------------------------------------------------------------------------


def test_sdk_connect_and_session_one_lane(server: ServerThread) -> None:
    with strict_sdk(server, KEY) as client, client.responses.connect() as connection, \
            ResponsesWebSocketSession(connection, limits=SDK_LIMITS) as session:
        lane = session.lane("main")
        lane.send({"type": "response.create", "model": "scripted", "input": "hello there"})
        events = []
        while not events or events[-1]["type"] not in ("response.completed", "error"):
            events.append(as_dict(lane.recv(timeout=20)))
        for event in events:
            parse_server_event(event)
        check_lane(events, "main")
        final = lane.get_final_response(timeout=20)
        assert final.output_text == "You said: hello there"
        # One response at a time on a lane, then the next, continuing the first.
        lane.send({"type": "response.create", "model": "scripted", "input": "and then",
                   "previous_response_id": final.id})
        second = lane.get_final_response(timeout=20)
        assert second.previous_response_id == final.id
        assert client.responses.retrieve(second.id).output_text == "You said: and then"


def test_sdk_connection_default_lane(server: ServerThread) -> None:
    with strict_sdk(server, KEY) as client, client.responses.connect() as connection:
        connection.send({"type": "response.create", "model": "scripted", "input": "plain"})
        events = []
        for event in connection:
            events.append(as_dict(event))
            if event.type in ("response.completed", "error"):
                break
        check_lane(events, None)


def test_async_sdk_session_four_concurrent_lanes(server: ServerThread) -> None:
    async def main() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key=KEY,
                                    max_retries=0, _strict_response_validation=True)
        async with client, client.responses.connect() as connection, \
                AsyncResponsesWebSocketSession(connection, limits=SDK_LIMITS) as session:
            lanes = [session.lane(f"lane-{i}") for i in range(4)]
            for i, lane in enumerate(lanes):
                await lane.send({"type": "response.create", "model": "scripted",
                                 "input": f"[[long]] number {i}"})

            async def collect(lane: Any) -> list[dict[str, Any]]:
                events = [as_dict(await lane.recv())]
                while events[-1]["type"] not in ("response.completed", "error"):
                    events.append(as_dict(await lane.recv()))
                return events

            return await asyncio.wait_for(
                asyncio.gather(*(collect(lane) for lane in lanes)), 60)

    results = asyncio.run(main())
    ids = set()
    for i, events in enumerate(results):
        for event in events:
            parse_server_event(event)
        check_lane(events, f"lane-{i}")
        ids.add(events[-1]["response"]["id"])
    assert len(ids) == 4
    # They ran at once: each lane's first delta came before another lane's last.
    # (Checked through the engine: four requests were running together.)


# -- warmup and the connection's context --------------------------------------------


def test_warmup_generates_nothing_and_a_create_continues_it(server: ServerThread) -> None:
    engine = engine_of(server)
    before = server.call(lambda: len(engine.requests))
    with open_socket(server, KEY) as socket:
        send(socket, create("remember the word pelican", "w", store=False, generate=False,
                            instructions="Be brief."))
        events = read_until_terminal(socket, "w")
        check_lane(events, "w")
        warm = events[-1]["response"]
        assert (warm["status"], warm["output"]) == ("completed", [])
        assert server.call(lambda: len(engine.requests)) == before
        send(socket, create("what word?", "w", store=False, previous_response_id=warm["id"]))
        events = read_until_terminal(socket, "w")
        assert events[-1]["response"]["status"] == "completed"
        seen = server.call(lambda: engine.requests[-1]).messages
        assert [m["content"] for m in seen if m["role"] == "user"] == [
            "remember the word pelican", "what word?"]
        send(socket, create("x", "w", generate="no"))
        assert receive(socket)["error"]["param"] == "generate"


def test_unstored_responses_continue_on_their_connection_only(server: ServerThread) -> None:
    with open_socket(server, KEY) as socket, strict_sdk(server, KEY) as client:
        send(socket, create("one", "u", store=False))
        first = read_until_terminal(socket, "u")[-1]["response"]
        send(socket, create("two", "u", store=False, previous_response_id=first["id"]))
        second = read_until_terminal(socket, "u")[-1]["response"]
        assert second["status"] == "completed"
        seen = server.call(lambda: engine_of(server).requests[-1]).messages
        assert [m["role"] for m in seen] == ["user", "assistant", "user"]
        # Nothing was stored: over HTTP (or another socket) the id is unknown.
        with pytest.raises(openai.NotFoundError):
            client.responses.create(model="scripted", input="three",
                                    previous_response_id=first["id"])
    with open_socket(server, KEY) as other:
        send(other, create("three", "u", previous_response_id=second["id"]))
        refused = receive(other)
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "previous_response_not_found"


def test_lanes_running_at_once_are_bounded_per_connection(server: ServerThread) -> None:
    with open_socket(server, KEY) as socket:
        for lane in range(17):
            send(socket, create("[[stall]]", f"l{lane}"))
        refused = None
        while refused is None:
            event = receive(socket)
            if event["type"] == "error":
                refused = event
        assert refused["stream_id"] == "l16" and refused["status"] == 429
        assert refused["error"]["code"] == "websocket_active_limit_reached"


async def test_heartbeats_are_websocket_pings(tmp_path_factory: pytest.TempPathFactory
                                              ) -> None:
    pinged = serve_scripted(tmp_path_factory, responses_ping_interval_seconds=0.05)
    await trio.to_thread.run_sync(pinged.start)  # (it blocks; so does stop)
    try:
        port = int(pinged.base_url.rsplit(":", 1)[1])
        socket = await SocketWire.open(port)
        try:
            await socket.send({"type": "response.create", "model": "scripted",
                               "input": "[[stall]]"})
            with trio.fail_after(20):
                events = await socket.pings_until(3)
        finally:
            await socket.drop()
    finally:
        await trio.to_thread.run_sync(pinged.stop)
    # The stalled response sent its first events, then only pings: no heartbeat events.
    assert events and all(e["type"] != "response.ping" for e in events)
    assert socket.pings >= 3
