"""``response.steer`` over a WebSocket: accepted → the response ends ``incomplete``
(``steered``) at a safe boundary → a successor starts by itself and completes; pending
after a tool call until the client's create brings the outputs; failures with the SDK's
codes; the queue bounded. Every event is parsed by the SDK's models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai.lib.responses_websocket import ResponsesWebSocketSession

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
from trio_responses.engine.scripted import ScriptedEngine

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # 10 ms a token: a tool call's markup takes a few hundred ms to stream, long enough
    # for a steer sent at its first delta to arrive while it is still being written.
    with socket_server(tmp_path_factory, long_words=1000, token_delay=0.01) as running:
        yield running


def create(text: Any, stream_id: str, **fields: Any) -> dict[str, Any]:
    return create_event(text, stream_id, **fields)


def steer(response_id: str, text: Any) -> dict[str, Any]:
    return {"type": "response.steer", "previous_response_id": response_id, "input": text}


def started(socket: Any) -> tuple[str, list[dict[str, Any]]]:
    """Read up to the first output delta; the response's id and its events so far."""
    events = [receive(socket)]
    while events[-1]["type"] != "response.output_text.delta":
        events.append(receive(socket))
    return events[0]["response"]["id"], events


def test_steer_ends_the_response_steered_and_a_successor_completes(
        server: ServerThread) -> None:
    with strict_sdk(server, KEY) as client, client.responses.connect() as connection, \
            ResponsesWebSocketSession(connection, limits=SDK_LIMITS) as session:
        lane = session.lane("s")
        lane.send({"type": "response.create", "model": "scripted", "input": "[[long]]",
                   "instructions": "Be brief."})
        events = [as_dict(lane.recv(timeout=20))]
        while events[-1]["type"] != "response.output_text.delta":
            events.append(as_dict(lane.recv(timeout=20)))
        first_id = events[0]["response"]["id"]
        lane.send({"type": "response.steer", "previous_response_id": first_id,
                   "input": "change course"})
        accepted = None
        while not is_terminal(events[-1]):
            event = as_dict(lane.recv(timeout=20))
            if event["type"] == "response.steer.accepted":
                accepted = event
            else:
                events.append(event)
        assert accepted is not None and accepted["stream_id"] == "s"
        assert accepted["steer"]["previous_response_id"] == first_id
        assert accepted["steer"]["id"].startswith("steer_")
        check_lane(events, "s")
        steered = events[-1]["response"]
        assert (steered["status"], steered["incomplete_details"]) == \
            ("incomplete", {"reason": "steered"})
        # The successor: started by the server, the same settings, continuing from it.
        # (The session's final response is the cached one until the successor's
        # response.created has been read: the SDK's documented way is recv() to it.)
        created = as_dict(lane.recv(timeout=20))
        assert created["type"] == "response.created"
        successor = lane.get_final_response(timeout=20)
        assert successor.id == created["response"]["id"]
        assert successor.previous_response_id == first_id
        assert successor.instructions == "Be brief."
        assert successor.status == "completed"
        assert successor.output_text == "You said: change course"
    assert first_id in engine_of(server).aborted
    with strict_sdk(server, KEY) as client:
        assert client.responses.retrieve(first_id).incomplete_details.reason == "steered"
        items = client.responses.input_items.list(successor.id).data
        assert [item.content[0].text for item in items] == ["change course"]


def test_steer_during_a_tool_call_waits_for_the_tool_outputs(server: ServerThread) -> None:
    with open_socket(server, KEY) as socket:
        # A call whose arguments take ~150 tokens (1.5 s) to stream: the steer, sent
        # as the response starts, arrives while the call is being written.
        city = " ".join(f"c{i}" for i in range(150))
        send(socket, create(f'[[call:get_weather {{"city": "{city}"}}]]', "t", tools=[WEATHER]))
        events = [receive(socket)]
        response_id = events[0]["response"]["id"]
        send(socket, steer(response_id, [{"role": "user", "content": "also say hi"}]))
        notices: list[dict[str, Any]] = []
        while not is_terminal(events[-1]):
            event = receive(socket)
            (notices if event["type"].startswith("response.steer.") else events).append(event)
        check_lane(events, "t")
        completed = events[-1]["response"]
        assert completed["status"] == "completed"  # the call was not cut
        call = completed["output"][-1]
        assert call["type"] == "function_call"
        while len(notices) < 2:
            notices.append(receive(socket))
        assert [n["type"] for n in notices] == ["response.steer.accepted",
                                                "response.steer.pending"]
        pending = notices[1]
        assert pending["reason"] == "waiting_for_required_input"
        assert pending["required_input"] == [{"type": "function_call_output",
                                              "call_id": call["call_id"],
                                              "name": "get_weather"}]
        assert pending["steer"]["id"] == notices[0]["steer"]["id"]
        # The client's continuation gets the queued input prepended.
        output = {"type": "function_call_output", "call_id": call["call_id"],
                  "output": "sunny"}
        send(socket, create([output], "t", tools=[WEATHER], previous_response_id=response_id))
        follow = []
        while not follow or not is_terminal(follow[-1]):
            follow.append(receive(socket))
        check_lane(follow, "t")
        assert follow[-1]["response"]["status"] == "completed"
    seen = engine_of(server).requests[-1].messages
    assert any(m.get("role") == "user" and "also say hi" in str(m.get("content"))
               for m in seen)
    with strict_sdk(server, KEY) as client:
        items = client.responses.input_items.list(follow[-1]["response"]["id"],
                                                  order="asc").data
        assert [item.type for item in items] == ["message", "function_call_output"]


def test_steer_failures_carry_the_sdk_codes(server: ServerThread) -> None:
    with open_socket(server, KEY) as socket, strict_sdk(server, KEY) as client:
        send(socket, steer("resp_unknown", "hi"))
        failed = receive(socket)
        assert failed["type"] == "response.steer.failed"
        assert failed["error"]["code"] == "response_not_found"
        assert failed["steer"] == {"input": "hi", "previous_response_id": "resp_unknown"}
        # A completed response takes no more steering.
        send(socket, create("short", "f"))
        done = []
        while not done or not is_terminal(done[-1]):
            done.append(receive(socket))
        send(socket, steer(done[0]["response"]["id"], "late"))
        assert receive(socket)["error"]["code"] == "response_already_completed"
        # A response that stalls (no safe boundary comes): steering queues up, bounded.
        send(socket, create("[[stall]]", "f"))
        stalled_id, _ = started(socket)
        send(socket, steer(stalled_id, [{"role": "assistant", "content": "no"}]))
        invalid = receive(socket)
        assert invalid["error"]["code"] == "invalid_input" and "id" not in invalid["steer"]
        accepted = []
        for index in range(9):
            send(socket, steer(stalled_id, f"input {index}"))
            event = receive(socket)
            if event["type"] == "response.steer.accepted":
                accepted.append(event["steer"]["id"])
            else:
                assert event["error"]["code"] == "too_many_pending_steers"
                assert event["stream_id"] == "f"
        assert len(accepted) == 8
        # Cancelled, it returns every queued input, each with its steering id.
        client.responses.cancel(stalled_id)
        events: list[dict[str, Any]] = []
        while len([e for e in events if e["type"] == "response.steer.failed"]) < 8:
            events.append(receive(socket))
        failures = [e for e in events if e["type"] == "response.steer.failed"]
        assert [f["steer"]["id"] for f in failures] == accepted
        assert {f["error"]["code"] for f in failures} == {"response_not_active"}
        assert [f["steer"]["input"] for f in failures] == [f"input {i}" for i in range(8)]
        send(socket, steer(stalled_id, "too late"))
        assert receive(socket)["error"]["code"] == "response_not_active"
        assert run_ended(server, stalled_id)


def test_steer_events_parse_in_the_sdk(server: ServerThread) -> None:
    # (every receive() parses; this pins the three shapes explicitly)
    for event in (
        {"type": "response.steer.accepted", "sequence_number": 0, "stream_id": "a",
         "steer": {"id": "steer_1", "previous_response_id": "resp_1"}},
        {"type": "response.steer.pending", "sequence_number": 1, "reason":
         "waiting_for_required_input", "required_input": [
             {"type": "function_call_output", "call_id": "c", "name": "f"}],
         "steer": {"id": "steer_1", "previous_response_id": "resp_1"}},
        {"type": "response.steer.failed", "sequence_number": 2, "steer": {
            "input": "x", "previous_response_id": "resp_1"}, "error": {
            "code": "invalid_input", "message": "m", "type": "invalid_request_error"}},
    ):
        assert parse_server_event(event).type == event["type"]


def test_closing_the_socket_with_queued_steering_ends_everything(server: ServerThread) -> None:
    with open_socket(server, KEY) as socket:
        send(socket, create("[[stall]]", "x"))
        response_id, _ = started(socket)
        send(socket, steer(response_id, "queued"))
        assert receive(socket)["type"] == "response.steer.accepted"
    wait_until(lambda: run_ended(server, response_id), 10, "the run ended")
    assert response_id in engine_of(server).aborted


def test_steer_as_the_response_completes_normally_still_gets_a_successor(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # A one-token reply after a long first-token wait: the steer is accepted before any
    # delta, and the only delta is also the last (no boundary before the end), so the
    # response completes normally with the input queued.
    engine = ScriptedEngine(reply=lambda request: "done", first_token_delay=2.0)
    with serve_scripted(tmp_path_factory, engine, api_keys=[KEY]) as slow, \
            open_socket(slow, KEY) as socket:
        send(socket, create("go", "n"))
        created = receive(socket)
        response_id = created["response"]["id"]
        send(socket, steer(response_id, "and then this"))
        events = [created]
        notices = []
        while not is_terminal(events[-1]):
            event = receive(socket)
            (notices if event["type"].startswith("response.steer.") else events).append(event)
        check_lane(events, "n")
        assert [n["type"] for n in notices] == ["response.steer.accepted"]
        assert events[-1]["type"] == "response.completed"
        successor = [receive(socket)]
        while not is_terminal(successor[-1]):
            successor.append(receive(socket))
        check_lane(successor, "n")
        assert successor[-1]["response"]["previous_response_id"] == response_id
        seen = slow.call(lambda: engine.requests[-1]).messages
        assert seen[-1] == {"role": "user", "content": "and then this"}
