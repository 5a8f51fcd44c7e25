"""Ends that are not a normal finish: the client leaving mid-stream (the engine request
is aborted), and the engine failing a request (``error`` + ``response.failed``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from tests.server.helpers import MODEL, aborted, on_server, running, types_of, wait_status
from tests.support.events import check_stream, sdk_events, sdk_events_until_error
from tests.support.server import ServerThread, engine_of
from tests.support.sse import read_sse
from tests.support.waiting import wait_until

# created, in_progress, output_item.added, content_part.added, the first delta; then
# "[[stall]]" makes the scripted engine wait forever.
BEFORE_STALL = ["response.created", "response.in_progress", "response.output_item.added",
                "response.content_part.added", "response.output_text.delta"]



def assert_healthy(http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text


def test_disconnect_aborts_the_engine_request(scripted_server: ServerThread,
                                              http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "talk [[stall]] then hang", "stream": True}
    with connect_sse(http, "POST", "/v1/responses", json=body) as source:
        events = read_sse(source, count=len(BEFORE_STALL))
    # Leaving the block closed the connection mid-stream.
    check_stream(events, resumed_after=-1)
    assert types_of(events) == BEFORE_STALL
    response_id = events[0]["response"]["id"]
    wait_until(lambda: aborted(scripted_server, response_id), what="engine abort")
    wait_until(lambda: running(scripted_server) == 0, what="no engine request running")
    stored = http.get(f"/v1/responses/{response_id}").json()
    assert stored["status"] == "cancelled"
    assert_healthy(http)


def test_disconnect_with_the_sdk(scripted_server: ServerThread, client: openai.OpenAI
                                 ) -> None:
    with client.responses.stream(model=MODEL, input="[[stall]] sdk") as stream:
        events = []
        for event in stream:
            events.append(event)
            if len(events) == len(BEFORE_STALL):
                break
    events_json = sdk_events(events)
    check_stream(events_json, resumed_after=-1)
    assert types_of(events_json) == BEFORE_STALL
    response_id = events_json[0]["response"]["id"]
    wait_until(lambda: aborted(scripted_server, response_id), what="engine abort")
    wait_status(client, response_id, {"cancelled"})
    assert running(scripted_server) == 0


def test_disconnect_from_non_streaming_request(scripted_server: ServerThread,
                                               http: httpx.Client) -> None:
    engine = engine_of(scripted_server)
    before = on_server(scripted_server, lambda: len(engine.requests))
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/responses", json={"model": MODEL, "input": "[[stall]] json"},
                  timeout=httpx.Timeout(10, read=0.3))
    requests = on_server(scripted_server, lambda: list(engine.requests))
    assert len(requests) == before + 1
    response_id = requests[-1].request_id
    wait_until(lambda: aborted(scripted_server, response_id), what="engine abort")
    wait_until(lambda: running(scripted_server) == 0, what="no engine request running")


def test_disconnect_leaves_background_running(scripted_server: ServerThread,
                                              client: openai.OpenAI, http: httpx.Client
                                              ) -> None:
    body = {"model": MODEL, "input": "[[stall]] background", "stream": True,
            "background": True, "store": True}
    with connect_sse(http, "POST", "/v1/responses", json=body) as source:
        events = read_sse(source, count=3)
    check_stream(events, resumed_after=-1)
    response_id = events[0]["response"]["id"]
    wait_until(lambda: len(client.responses.retrieve(response_id).output) == 1,
               what="the first token")
    assert not aborted(scripted_server, response_id)
    assert client.responses.retrieve(response_id).status == "in_progress"
    assert client.responses.cancel(response_id).status == "cancelled"
    assert aborted(scripted_server, response_id)


def test_engine_failure_stream(scripted_server: ServerThread, client: openai.OpenAI,
                               http: httpx.Client) -> None:
    # The SDK raises at the error event (it carries an "error" object, as OpenAI's does).
    with client.responses.stream(model=MODEL, input="go [[fail]] now") as stream:
        seen, raised = sdk_events_until_error(stream)
    assert types_of(seen) == BEFORE_STALL
    assert raised.body["code"] == "server_error" and raised.message == raised.body["message"]
    # On the wire: the error event, then response.failed.
    with connect_sse(http, "POST", "/v1/responses",
                     json={"model": MODEL, "input": "go [[fail]] now", "stream": True}) as source:
        events = read_sse(source)
    check_stream(events)
    assert types_of(events) == [*BEFORE_STALL, "error", "response.failed"]
    error = events[-2]
    assert error["code"] and error["message"] == raised.message
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == error["code"]
    stored = client.responses.retrieve(seen[0]["response"]["id"])
    assert stored.status == "failed" and stored.error is not None
    assert stored.error.message == error["message"]
    assert_healthy(http)
    again = client.responses.create(model=MODEL, input="still here")
    assert again.status == "completed" and again.output_text == "You said: still here"
    assert running(scripted_server) == 0


def test_engine_failure_json(client: openai.OpenAI, http: httpx.Client) -> None:
    response = client.responses.create(model=MODEL, input="[[fail]]")
    assert response.status == "failed"
    assert response.error is not None and response.error.message
    assert client.responses.retrieve(response.id).status == "failed"
    assert_healthy(http)


def test_engine_failure_background(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input="[[fail]]", background=True,
                                      store=True)
    assert wait_status(client, created.id, {"failed", "completed"})[-1] == "failed"
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true"}) as source:
        events = read_sse(source)
    check_stream(events)
    assert types_of(events)[-2:] == ["error", "response.failed"]


def test_concurrent_streams_with_disconnects(scripted_server: ServerThread,
                                            http: httpx.Client) -> None:
    """Six clients leave stalled streams while six others read theirs to the end: every
    one that left is aborted once, none that finished is, and nothing keeps running."""
    engine = engine_of(scripted_server)
    aborted_before = on_server(scripted_server, lambda: len(engine.aborted))

    def leave(n: int) -> str:
        with connect_sse(http, "POST", "/v1/responses", json={
                "model": MODEL, "input": f"[[stall]] {n}", "stream": True}) as source:
            events = read_sse(source, count=len(BEFORE_STALL))
        check_stream(events, resumed_after=-1)
        return str(events[0]["response"]["id"])

    def finish(n: int) -> str:
        with connect_sse(http, "POST", "/v1/responses", json={
                "model": MODEL, "input": f"reader {n} one two", "stream": True}) as source:
            events = read_sse(source)
        check_stream(events)
        assert events[-1]["type"] == "response.completed"
        return str(events[0]["response"]["id"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        left = [pool.submit(leave, n) for n in range(6)]
        finished = [pool.submit(finish, n) for n in range(6)]
        left_ids = {future.result() for future in left}
        finished_ids = {future.result() for future in finished}
    wait_until(lambda: running(scripted_server) == 0, what="no engine request running")
    new_aborts = on_server(scripted_server, lambda: engine.aborted[aborted_before:])
    assert sorted(new_aborts) == sorted(left_ids)
    assert not finished_ids & set(new_aborts)
