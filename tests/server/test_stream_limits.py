"""Stream bounds over real HTTP, on servers with small limits: a client that stops
reading (``--responses-stream-buffer-max-bytes``), an event too large to send
(``--max-stream-event-bytes``), and a stream that runs too long
(``--responses-max-stream-seconds``). Each ends with a terminal event, never cut."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import openai
import pytest
from httpx_sse import EventSource, connect_sse

from tests.server.helpers import MODEL, aborted, http_client, running, types_of
from tests.support.events import check_stream, joined_text, sdk_events_until_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from tests.support.sse import read_sse
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine

BUFFER_LIMIT = 256 * 1024
EVENT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """No token delay, a 256 KiB stream buffer and 64 KiB events."""
    with serve_scripted(tmp_path_factory, ScriptedEngine(model_name=MODEL),
                        responses_stream_buffer_max_bytes=BUFFER_LIMIT,
                        max_stream_event_bytes=EVENT_LIMIT) as server:
        yield server


@pytest.fixture(scope="module")
def short_streams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Streams may last 0.3 s."""
    with serve_scripted(tmp_path_factory, ScriptedEngine(model_name=MODEL,
                                                         token_delay=0.005),
                        responses_max_stream_seconds=0.3) as server:
        yield server


def test_client_that_stops_reading(small_limits: ServerThread) -> None:
    # 100 tokens, most of them 30 kB (ignore_eos repeats the reply up to the limit): far
    # more than the socket buffers and the stream buffer hold (on loopback about 16
    # deltas fit before the bound is passed).
    body = {"model": MODEL, "input": "x" * 30_000 + " " + "y" * 30_000, "stream": True,
            "store": False, "max_output_tokens": 100, "ignore_eos": True}
    # A small receive window, so the kernel does not absorb the stream for us.
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                                     65536)])
    with httpx.Client(base_url=small_limits.base_url, transport=transport, timeout=30) as slow, \
            slow.stream("POST", "/v1/responses", json=body) as response:
        engine = small_limits.engine
        assert isinstance(engine, ScriptedEngine)
        wait_until(lambda: small_limits.call(lambda: len(engine.aborted)) == 1, timeout=10,
                   what="the engine request aborted")
        events = read_sse(EventSource(response))
    check_stream(events)
    assert types_of(events)[-2:] == ["error", "response.failed"]
    assert "--responses-stream-buffer-max-bytes" in events[-2]["message"]
    assert 0 < types_of(events).count("response.output_text.delta") < 100
    assert running(small_limits) == 0


def test_event_over_the_limit_fails_the_stream(small_limits: ServerThread) -> None:
    # Small deltas, but the .done events would carry all ~80 kB of text at once.
    words = " ".join(f"w{n:03d}" + "y" * 200 for n in range(400))
    with http_client(small_limits) as http, \
            connect_sse(http, "POST", "/v1/responses",
                        json={"model": MODEL, "input": words, "stream": True}) as source:
        events = read_sse(source)
    check_stream(events)
    assert types_of(events)[-2:] == ["error", "response.failed"]
    assert "--max-stream-event-bytes" in events[-2]["message"]
    assert len(joined_text(events)) > EVENT_LIMIT
    with strict_sdk(small_limits) as client:
        stored = client.responses.retrieve(events[0]["response"]["id"])
        assert stored.status == "failed"
        # A plain JSON response sends no events, so the limit does not apply to it.
        plain = client.responses.create(model=MODEL, input=words)
        assert plain.status == "completed" and len(plain.output_text) > EVENT_LIMIT


def test_stream_over_the_maximum_duration(short_streams: ServerThread) -> None:
    with strict_sdk(short_streams) as client:
        with client.responses.stream(model=MODEL, input="[[stall]] too long") as stream:
            events, raised = sdk_events_until_error(stream)
        assert "maximum stream duration" in raised.message
        response_id = events[0]["response"]["id"]
        assert aborted(short_streams, response_id)
        assert client.responses.retrieve(response_id).status == "failed"
        # Streams that finish in time are not affected.
        done = client.responses.create(model=MODEL, input="quick one")
        assert done.status == "completed"


def test_background_over_the_maximum_duration(short_streams: ServerThread) -> None:
    with strict_sdk(short_streams) as client:
        created = client.responses.create(model=MODEL, input="[[stall]]", background=True,
                                          store=True)
        wait_until(lambda: client.responses.retrieve(created.id).status == "failed",
                   what="the background response failed")
        assert aborted(short_streams, created.id)
    with http_client(short_streams) as http, \
            connect_sse(http, "GET", f"/v1/responses/{created.id}?stream=true") as source:
        events = read_sse(source)
    check_stream(events)
    assert types_of(events)[-2:] == ["error", "response.failed"]


def test_bad_request_on_limited_server(small_limits: ServerThread) -> None:
    with strict_sdk(small_limits) as client, pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input="x", max_output_tokens=0)
