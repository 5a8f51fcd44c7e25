"""SSE bodies on their short path to the socket (web/sse_send.py), on real Hypercorn.

On HTTP/1.1 the chunks are framed by the app and written to the connection directly;
h11 still sends the head and the end, and must still agree with what went out: the
chunked body decodes, and the next request on the same connection is answered. Where
the short path does not apply (HTTP/1.0: no chunked encoding) the ASGI ``send`` carries
the body as before.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.helpers import MODEL
from tests.support.events import check_stream, joined_text
from tests.support.server import ServerThread
from tests.support.sse import parse_raw_sse
from trio_responses.web import sse_send


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The sizes of the chunks the short path wrote (the server runs in another thread:
    the class attribute is what it calls)."""
    sizes: list[int] = []
    write = sse_send.ChunkWriter.write

    async def counted(self: sse_send.ChunkWriter, data: bytes) -> None:
        sizes.append(len(data))
        await write(self, data)

    monkeypatch.setattr(sse_send.ChunkWriter, "write", counted)
    yield sizes


def stream_body(text: str) -> bytes:
    return json.dumps({"model": MODEL, "input": text, "stream": True, "store": False}).encode()


def post(body: bytes, version: bytes = b"1.1") -> bytes:
    return (b"POST /v1/responses HTTP/" + version + b"\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    while marker not in data:
        received = sock.recv(1 << 16)
        assert received, f"closed before {marker!r}: {data[-300:]!r}"
        data += received
    return data


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
