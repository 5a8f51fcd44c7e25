"""SSE bodies on their short path to the socket (web/sse_send.py), on real Hypercorn.

On HTTP/1.1 the chunks are framed by the app and written to the connection directly;
h11 still sends the head and the end, and must still agree with what went out: the
chunked body decodes, and the next request on the same connection is answered. Where
the short path does not apply (HTTP/1.0: no chunked encoding) the ASGI ``send`` carries
the body as before, and on HTTP/2 Hypercorn's own stream does.

When the connection is idle a chunk goes out in one direct ``send()`` on the socket;
what does not (a partial write, a full socket, a broken connection) goes through
Hypercorn's ``protocol_send``. The tests below drive each of those through the real
server on loopback: a partial write's rest follows it (the body still decodes), a
client that stops reading and then resets the connection ends the run as a disconnect,
and HTTP/2 never takes the short path. A client that stops reading for good meets the
stream buffer bound (tests/server/test_stream_limits.py), through this same writer.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from tests.server.helpers import MODEL, aborted, http_client, read_until, running
from tests.support.events import check_stream, joined_text
from tests.support.server import ServerThread, serve_scripted
from tests.support.sse import parse_raw_sse
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.web import sse_send, streaming


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The sizes of the chunks the short path wrote, from the body (write) or from the
    task that produced them (take, when it sent them); the server runs in another
    thread: the class attributes are what it calls."""
    sizes: list[int] = []
    write, take = sse_send.ChunkWriter.write, sse_send.ChunkWriter.take

    async def counted(self: sse_send.ChunkWriter, data: bytes) -> None:
        sizes.append(len(data))
        await write(self, data)

    def counted_take(self: sse_send.ChunkWriter, data: bytes) -> bool:
        taken = take(self, data)
        if taken:
            sizes.append(len(data))
        return taken

    monkeypatch.setattr(sse_send.ChunkWriter, "write", counted)
    monkeypatch.setattr(sse_send.ChunkWriter, "take", counted_take)
    yield sizes


@pytest.fixture
def direct_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Each direct send the short path tried: (chunk size, bytes the socket took)."""
    sends: list[tuple[int, int]] = []
    send_now = sse_send.ChunkWriter._send_now

    def counted(self: sse_send.ChunkWriter, chunk: bytes) -> int:
        sent = send_now(self, chunk)
        sends.append((len(chunk), sent))
        return sent

    monkeypatch.setattr(sse_send.ChunkWriter, "_send_now", counted)
    yield sends


@pytest.fixture(scope="module")
def paced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A token every 5 ms, so a stream is still running when its client goes; the first
    after 50 ms, so the body already waits for it."""
    with serve_scripted(tmp_path_factory, ScriptedEngine(
            model_name=MODEL, token_delay=0.005, first_token_delay=0.05)) as server:
        yield server


@pytest.fixture(scope="module")
def h2c_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, h2c=True) as server:
        yield server


def stream_body(text: str, **fields: Any) -> bytes:
    return json.dumps({"model": MODEL, "input": text, "stream": True, "store": False,
                       **fields}).encode()


def address(server: ServerThread) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


# Replies of big tokens: "You said: " and the input's words, each ~30 kB (ignore_eos
# repeats the reply up to max_output_tokens).
BIG_WORDS = " ".join(letter * 30_000 for letter in "abc")


def post(body: bytes, version: bytes = b"1.1") -> bytes:
    return (b"POST /v1/responses HTTP/" + version + b"\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def dechunk(body: bytes) -> tuple[bytes, bytes]:
    """A chunked body's bytes, and what follows its last chunk."""
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest.startswith(b"\r\n"), rest[:50]
            return out, rest[2:]
        out += rest[:size]
        assert rest[size:size + 2] == b"\r\n"
        body = rest[size + 2:]


def events_of(raw: bytes) -> list[dict[str, Any]]:
    events, comments = parse_raw_sse(raw)
    assert comments == []
    check_stream(events)
    return events


def test_streams_take_the_short_path_and_decode(http: httpx.Client,
                                                 direct_writes: list[int]) -> None:
    response = http.post("/v1/responses", content=stream_body("short path please"),
                         headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert joined_text(events_of(response.content)) == "You said: short path please"
    # Every byte of the body, [DONE] included, went the short way.
    assert sum(direct_writes) == len(response.content)


def test_the_connection_serves_the_next_request_after_a_stream(
        scripted_server: ServerThread, direct_writes: list[int]) -> None:
    host, port = scripted_server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for text in ("first one", "second one"):
            sock.sendall(post(stream_body(text)))
            data = read_until(sock, b"\r\n0\r\n\r\n")
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"transfer-encoding: chunked" in head.lower()
            raw, rest = dechunk(body)
            assert rest == b""
            assert joined_text(events_of(raw)) == f"You said: {text}"
    assert direct_writes


def test_http_1_0_takes_the_asgi_path(scripted_server: ServerThread,
                                      direct_writes: list[int]) -> None:
    host, port = scripted_server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(post(stream_body("old client"), version=b"1.0"))
        data = b""
        while received := sock.recv(1 << 16):
            data += received
    head, _, raw = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    assert joined_text(events_of(raw)) == "You said: old client"
    assert direct_writes == []


def test_direct_sends_carry_the_stream(http: httpx.Client,
                                       direct_sends: list[tuple[int, int]]) -> None:
    response = http.post("/v1/responses", content=stream_body("direct please"),
                         headers={"content-type": "application/json"})
    assert joined_text(events_of(response.content)) == "You said: direct please"
    # An idle connection on loopback takes each small chunk whole, in one send().
    assert direct_sends and all(sent == size for size, sent in direct_sends)


def test_a_partial_write_is_finished_before_the_next_chunk(
        scripted_server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every direct send writes only the first half of its chunk (a real partial write
    on the socket), the flusher's as the body's: the body is woken for the rest of the
    flusher's, Hypercorn's path sends each rest, and the body decodes whole."""
    send_now = sse_send.ChunkWriter._send_now
    halves: list[int] = []
    wakes: list[bool] = []
    wake = streaming.SSEBody.wake

    def counted_wake(self: streaming.SSEBody) -> None:
        wakes.append(True)
        wake(self)

    monkeypatch.setattr(streaming.SSEBody, "wake", counted_wake)

    def half(self: sse_send.ChunkWriter, chunk: bytes) -> int:
        sent = send_now(self, chunk[:len(chunk) // 2])
        halves.append(sent)
        return sent

    monkeypatch.setattr(sse_send.ChunkWriter, "_send_now", half)
    host, port = address(scripted_server)
    with socket.create_connection((host, port), timeout=10) as sock:
        for text in ("halves of chunks", "and again on the same connection"):
            sock.sendall(post(stream_body(text)))
            head, _, body = read_until(sock, b"\r\n0\r\n\r\n").partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            raw, rest = dechunk(body)
            assert rest == b""
            assert joined_text(events_of(raw)) == f"You said: {text}"
    assert halves and all(sent > 0 for sent in halves)
    assert wakes


def test_what_the_flusher_left_goes_out_without_waiting_for_more(
        paced_server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine stalls after its first token: the half of that token's chunk the
    flusher could not send still goes out at once (the body is woken for it), not when
    the next event comes."""
    send_now = sse_send.ChunkWriter._send_now

    def half(self: sse_send.ChunkWriter, chunk: bytes) -> int:
        return send_now(self, chunk[:len(chunk) // 2])

    monkeypatch.setattr(sse_send.ChunkWriter, "_send_now", half)
    host, port = address(paced_server)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(post(stream_body("one token then [[stall]]")))
        data = read_until(sock, b'"type":"response.output_text.delta"')
        data = read_until(sock, b"\n\n", data[data.index(b'"type":"response.output_text.delta"'):])
        assert b'"delta":"You"' in data


def test_a_full_socket_falls_back_and_the_body_decodes(
        scripted_server: ServerThread, direct_sends: list[tuple[int, int]]) -> None:
    """A client that reads nothing until the server's socket is full: the direct sends
    stop going whole (partial or refused), Hypercorn waits for the socket, and once the
    client reads, every byte arrives in order."""
    host, port = address(scripted_server)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(post(stream_body(BIG_WORDS, max_output_tokens=60, ignore_eos=True)))
        wait_until(lambda: any(sent < size for size, sent in list(direct_sends)), timeout=10,
                   what="a direct send that the full socket did not take whole")
        head, _, body = read_until(sock, b"\r\n0\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    raw, rest = dechunk(body)
    assert rest == b""
    events = events_of(raw)
    assert events[-1]["type"] == "response.incomplete"  # max_output_tokens
    assert len(joined_text(events)) > 1_000_000


def test_a_client_gone_mid_write_ends_the_run(
        paced_server: ServerThread, direct_sends: list[tuple[int, int]]) -> None:
    """The client stops reading, the server's writes back up, then the client resets
    the connection: the write fails, Hypercorn reports the disconnect, the run ends
    (cause ``disconnect``: the engine request is aborted, the response cancelled)."""
    host, port = address(paced_server)
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(post(stream_body(BIG_WORDS, max_output_tokens=2000, ignore_eos=True,
                                      store=True)))
        head = read_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        response_id = json.loads(read_until(sock, b"\n\n", head).split(b"data: ", 1)[1]
                                 .split(b"\n", 1)[0])["response"]["id"]
        wait_until(lambda: any(sent < size for size, sent in list(direct_sends)), timeout=10,
                   what="a direct send that the full socket did not take whole")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()  # with SO_LINGER 0: a reset, not a FIN
    wait_until(lambda: aborted(paced_server, response_id), timeout=10,
               what="the engine request aborted")
    wait_until(lambda: running(paced_server) == 0, timeout=10, what="no request running")
    with http_client(paced_server) as http:
        retrieved = http.get(f"/v1/responses/{response_id}").json()
        assert retrieved["status"] == "cancelled"
        # The server goes on serving.
        answer = http.post("/v1/responses", content=stream_body("still here"),
                           headers={"content-type": "application/json"})
        assert joined_text(events_of(answer.content)) == "You said: still here"


def test_http_2_takes_hypercorn_s_path(h2c_server: ServerThread,
                                       direct_writes: list[int]) -> None:
    host, port = address(h2c_server)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    body = stream_body("over h2")
    conn.send_headers(1, [(":method", "POST"), (":path", "/v1/responses"),
                          (":scheme", "http"), (":authority", f"{host}:{port}"),
                          ("content-type", "application/json"),
                          ("content-length", str(len(body)))])
    conn.send_data(1, body, end_stream=True)
    status, raw = 0, b""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    raw += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
    assert status == 200
    assert joined_text(events_of(raw)) == "You said: over h2"
    assert direct_writes == []
