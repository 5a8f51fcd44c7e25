"""HTTP/2 over cleartext is opt-in (issue 13, finding 10): Hypercorn speaks h2c to any
client that asks (prior knowledge, or an ``Upgrade: h2c``), so a proxy in front that
only understands HTTP/1.1 can be walked past (h2c smuggling). Without ``--h2c`` every
request that arrives that way is refused with 505; with it, it is served."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import pytest

from tests.support.server import ServerThread, serve_scripted

from .helpers import address


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def opted_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, h2c=True) as server:
        yield server


def h2_get(server: ServerThread, path: str) -> tuple[int, bytes]:
    """GET over HTTP/2 with prior knowledge: the status and the body."""
    host, port = address(server)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"),
                          (":authority", f"{host}:{port}")], end_stream=True)
    status, body = 0, b""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
    return status, body


def test_h2c_is_refused_by_default(default: ServerThread) -> None:
    status, body = h2_get(default, "/v1/models")
    assert status == 505, body
    assert b"http_version_not_supported" in body and b"--h2c" in body


def test_h2c_when_opted_in(opted_in: ServerThread) -> None:
    status, body = h2_get(opted_in, "/v1/models")
    assert status == 200, body
    assert b'"object":"list"' in body
