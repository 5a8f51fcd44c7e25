"""Size limits: request bodies (413, with and without Content-Length, without waiting
for the whole body), stream events (never sent cut), and each stream's unsent bytes (a
client that stops reading has its response ended and the engine request aborted)."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.errors import assert_openai_error
from tests.support.events import check_stream, sdk_events_until_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.sse import parse_raw_sse
from tests.support.waiting import wait_until
from trio_responses.engine.base import EngineRequest
from trio_responses.engine.scripted import ScriptedEngine, echo_reply, last_user_text

from .helpers import (
    MODEL,
    frames,
    http,
    json_request,
    raw_connect,
    read_body,
    read_response_head,
    request_head,
)

BODY_LIMIT = 10_000
EVENT_LIMIT = 4096
BUFFER_LIMIT = 64 * 1024
BIG_TOKEN = "a" * 5000  # one delta event larger than EVENT_LIMIT
BIG_REPLY = BIG_TOKEN + " and more"


def reply(request: EngineRequest) -> str:
    text = last_user_text(request)
    if "[[long]]" in text:
        return "word " * 20000  # ~5 MB of delta events
    if "[[big]]" in text:
        return BIG_REPLY
    return echo_reply(request)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, engine=ScriptedEngine(model_name=MODEL, reply=reply),
                        max_request_body_bytes=BODY_LIMIT, max_stream_event_bytes=EVENT_LIMIT,
                        responses_stream_buffer_max_bytes=BUFFER_LIMIT) as server:
        yield server


def padded_body(size: int) -> bytes:
    """A valid create request of exactly ``size`` bytes."""
    empty = json.dumps({"model": MODEL, "input": ""}).encode()
    body = json.dumps({"model": MODEL, "input": "x" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


def assert_413(response: httpx.Response) -> None:
    error = assert_openai_error(response, 413, code="request_too_large",
                                type="invalid_request_error")
    assert str(BODY_LIMIT) in error["message"]
    assert "--max-request-body-bytes" in error["message"]
    # The body was not read: the connection cannot carry another request.
    assert response.headers["connection"] == "close"


def assert_healthy(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    created = client.post("/v1/responses", json={"model": MODEL, "input": "still here"})
    assert created.status_code == 200
    assert created.json()["output"][0]["content"][0]["text"] == "You said: still here"


def test_body_at_the_limit_is_fine_one_byte_more_is_413(server: ServerThread) -> None:
    headers = {"content-type": "application/json"}
    with http(server) as client:
        assert client.post("/v1/responses", content=padded_body(BODY_LIMIT),
                           headers=headers).status_code == 200
        assert_413(client.post("/v1/responses", content=padded_body(BODY_LIMIT + 1),
                               headers=headers))
        assert_healthy(client)


def test_413_with_chunked_body_and_the_same_client_goes_on(server: ServerThread) -> None:
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(100):
            sent.append(1000)
            yield b"x" * 1000

    with http(server) as client:
        response = client.post("/v1/responses", content=body(),
                               headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert_413(response)
        # The same pooled client must not hang on the connection the 413 left behind.
        assert_healthy(client)
        assert_413(client.post("/v1/responses", content=body(),
                               headers={"content-type": "application/json"}))
        assert_healthy(client)


def test_413_without_waiting_for_a_declared_body(server: ServerThread) -> None:
    """Content-Length of 10 MB, not one body byte sent: the answer comes anyway."""
    with raw_connect(server, timeout=5) as sock:
        sock.sendall(request_head("POST", "/v1/responses", {
            "Content-Type": "application/json", "Content-Length": str(10 * 1024 * 1024)}))
        status, headers, rest = read_response_head(sock)
        body = json.loads(read_body(sock, headers, rest))
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert headers["connection"] == "close"


def test_413_before_a_chunked_body_ends(server: ServerThread) -> None:
    """Twice the limit in chunks, no final chunk: the server stops at the limit."""
    with raw_connect(server, timeout=5) as sock:
        sock.sendall(request_head("POST", "/v1/responses", {
            "Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        for _ in range(2 * BODY_LIMIT // 1000):
            # The server answers (and closes) as soon as the limit is passed: stop
            # sending then, as a real client would, instead of writing into a closed pipe.
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        status, headers, rest = read_response_head(sock)
        body = json.loads(read_body(sock, headers, rest))
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    with http(server) as client:
        assert_healthy(client)


def test_sdk_gets_413_without_retrying(server: ServerThread) -> None:
    with strict_sdk(server, max_retries=2) as client, \
            pytest.raises(openai.APIStatusError) as raised:
        client.responses.create(model=MODEL, input="x" * (2 * BODY_LIMIT))
    assert raised.value.status_code == 413
    assert raised.value.code == "request_too_large"


# -- stream events ------------------------------------------------------------------

def test_event_over_the_limit_ends_the_stream_never_cut(server: ServerThread) -> None:
    with http(server) as client:
        response = client.post("/v1/responses", json={"model": MODEL, "input": "[[big]]",
                                                      "stream": True})
    assert response.status_code == 200
    assert all(len(block) + 2 <= EVENT_LIMIT for block in frames(response.content))
    events, _ = parse_raw_sse(response.content)  # every frame whole, valid JSON
    check_stream(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    message = events[-2]["message"]
    assert "--max-stream-event-bytes" in message and str(EVENT_LIMIT) in message
    assert BIG_TOKEN not in response.text
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == message
    # Saved as failed, and the engine stopped: the rest of the reply was never generated.
    with http(server) as client:
        stored = client.get(f"/v1/responses/{failed['id']}").json()
    assert stored["status"] == "failed"
    assert stored["error"]["message"] == message
    assert server.call(lambda: failed["id"] in engine_of(server).aborted)


def test_event_limit_in_the_strict_sdk(server: ServerThread) -> None:
    with strict_sdk(server) as client:
        events, raised = sdk_events_until_error(
            client.responses.create(model=MODEL, input="[[big]]", stream=True))
    assert "--max-stream-event-bytes" in raised.message
    assert events and events[0]["type"] == "response.created"


def test_event_limit_does_not_touch_plain_json(server: ServerThread) -> None:
    """A non-streaming response sends no events: a long token is just text."""
    with strict_sdk(server) as client:
        response = client.responses.create(model=MODEL, input="[[big]]")
    assert response.status == "completed"
    assert response.output_text == BIG_REPLY


# -- a client that stops reading ----------------------------------------------------

def test_client_that_stops_reading_is_cut_off(server: ServerThread) -> None:
    engine = engine_of(server)
    before = server.call(lambda: len(engine.requests))
    with raw_connect(server, receive_buffer=4096) as sock:
        sock.sendall(json_request("/v1/responses", {
            "model": MODEL, "input": "[[long]]", "stream": True}))
        # Read nothing. The server fills the socket, then its buffer, then gives up.
        wait_until(lambda: server.call(lambda: len(engine.requests)) > before)
        response_id = server.call(lambda: engine.requests[-1].request_id)
        started = time.monotonic()
        wait_until(lambda: server.call(lambda: response_id in engine.aborted), timeout=10)
        assert time.monotonic() - started < 10
        with http(server) as client:
            stored = client.get(f"/v1/responses/{response_id}").json()
            assert stored["status"] == "failed"
            assert "--responses-stream-buffer-max-bytes" in stored["error"]["message"]
            metrics = client.get("/metrics").text
            assert 'trio_responses_cancellations_total{cause="overflow"}' in metrics
            assert 'trio_responses_engine_aborts_total{cause="overflow"}' in metrics
            assert_healthy(client)
        sock.shutdown(socket.SHUT_RDWR)
    # Far from all 20000 tokens were generated: the engine stopped early.
    generated = server.call(lambda: engine.statistics())
    assert generated.running == 0
