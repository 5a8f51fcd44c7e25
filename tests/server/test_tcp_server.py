"""Our per-connection server under Hypercorn (web/tcp_server.py), on real sockets.

Our serve paths install :class:`LeanTCPServer`; what it changes must not change what a
client sees: a stalled stream whose client leaves still ends its run and aborts its
engine request, the keep-alive timer still closes a connection idle between requests and
a head that never ends, a configured read timeout still cuts a connection, TLS still
works, and where Hypercorn is not the version it was written for, Hypercorn's own server
serves (and the app's one-task requests with it). What it saves is held per stream: no
memory channel for an open stream's request.
"""

from __future__ import annotations

import datetime
import gc
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.trio.tcp_server import TCPServer
from trio._channel import MemoryChannelState

import trio_responses.web.tcp_install
from tests.server.helpers import MODEL, aborted, http_client, read_until, running
from tests.support.server import TEST_SETTINGS, ServerThread, serve_scripted
from tests.support.waiting import wait_until
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.server import hypercorn_config
from trio_responses.web.app import create_app
from trio_responses.web.lazy_app import LazyApp
from trio_responses.web.tcp_install import install_tcp_server
from trio_responses.web.tcp_server import LeanTCPServer


def connect(server: ServerThread) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def stalled_request() -> bytes:
    body = json.dumps({"model": MODEL, "input": "hold [[stall]]", "stream": True,
                       "store": True}).encode()
    return (b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


def response_id(data: bytes) -> str:
    created = data.split(b"event: response.created\ndata: ", 1)[1].split(b"\n", 1)[0]
    return str(json.loads(created)["response"]["id"])


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while received := sock.recv(1 << 16):
        data += received
    return data


def connection_servers(server: ServerThread) -> list[type]:
    """The classes of the Hypercorn connection objects serving ``server``'s app."""
    def find() -> list[type]:
        return [type(obj) for obj in gc.get_objects()
                if isinstance(obj, TCPServer) and getattr(obj.app, "app", None) is server.app]
    return server.call(find)


def channel_states(server: ServerThread) -> int:
    """Trio memory channels alive in the server's process."""
    def count() -> int:
        gc.collect()
        return sum(1 for obj in gc.get_objects() if isinstance(obj, MemoryChannelState))
    return server.call(count)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, keep_alive_timeout_seconds=0.3) as server:
        yield server


def test_stalled_streams_hold_no_channel_and_their_disconnects_abort_the_runs(
    server: ServerThread,
) -> None:
    before = channel_states(server)
    socks = [connect(server) for _ in range(3)]
    ids = []
    for sock in socks:
        sock.sendall(stalled_request())
        data = read_until(sock, b"response.output_text.delta")
        assert data.startswith(b"HTTP/1.1 200")
        ids.append(response_id(data))
    assert running(server) == 3
    assert connection_servers(server) == [LeanTCPServer] * 3
    # Hypercorn's own server keeps a memory channel per request (see the fallback test).
    assert channel_states(server) == before
    for sock in socks:
        sock.close()
    wait_until(lambda: all(aborted(server, each) for each in ids))
    wait_until(lambda: running(server) == 0)
    with http_client(server) as http:
        assert {http.get(f"/v1/responses/{each}").json()["status"] for each in ids} \
            == {"cancelled"}


def test_an_open_stream_keeps_no_headers_for_an_access_log_none_writes(
    server: ServerThread,
) -> None:
    """Hypercorn keeps a request's scope and its response's start for the access log it
    writes at the end: with none configured (ours), their headers are let go of."""
    def streams() -> list[HTTPStream]:
        return [obj for obj in gc.get_objects()
                if isinstance(obj, HTTPStream) and not obj.closed
                and getattr(obj.app, "app", None) is server.app]

    with connect(server) as sock:
        sock.sendall(stalled_request())
        data = read_until(sock, b"response.output_text.delta")
        assert b"content-type: text/event-stream" in data.lower()
        [stream] = server.call(streams)
        assert stream.response["status"] == 200
        assert stream.response["headers"] == [] and stream.scope["headers"] == []
        assert stream.scope["method"] == "POST" and stream.scope["http_version"] == "1.1"
        ended = response_id(data)
    wait_until(lambda: aborted(server, ended))


async def test_an_access_log_still_gets_every_header(tmp_path: Path) -> None:
    """Where Hypercorn writes an access log, what it logs of a stream is unchanged."""
    records: list[str] = []
    logged = trio.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())
            logged.set()  # the server is in this Trio run

    access = logging.getLogger("tests.tcp_server.access")
    access.addHandler(Collect())
    access.setLevel(logging.INFO)
    settings = Settings(**{**TEST_SETTINGS, "store_path": str(tmp_path / "s.sqlite3")})
    app = create_app(settings, engine=ScriptedEngine(model_name=MODEL))
    config = hypercorn_config(settings)
    config.bind = ["127.0.0.1:0"]
    config.accesslog = access
    config.access_log_format = "%(s)s %({content-type}o)s %({x-probe}i)s"
    async with trio.open_nursery() as nursery:
        assert install_tcp_server()
        binds = await nursery.start(lambda task_status: hypercorn_serve(
            app, config, task_status=task_status))  # type: ignore[arg-type]
        port = int(binds[0].rsplit(":", 1)[1])
        body = json.dumps({"model": MODEL, "input": "logged", "stream": True,
                           "store": False}).encode()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\nX-Probe: seen\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))
        data = b""
        with trio.fail_after(10):
            while b"data: [DONE]" not in data:
                data += await stream.receive_some()
            # Logged when the response ends (closed before that, Hypercorn would log the
            # client's leaving as well).
            await logged.wait()
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert records == ["200 text/event-stream; charset=utf-8 seen"]


def test_keep_alive_between_requests_then_closed_when_idle(server: ServerThread) -> None:
    health = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(health)
        first = read_until(sock, b"}")
        sock.sendall(health)  # the same connection, kept alive
        # The second answer, then, idle past the keep-alive timeout (0.3 s), the close.
        rest = read_to_close(sock)
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 200")
    assert rest.endswith(b"}")


def test_a_head_that_never_ends_is_closed(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaa")
        # Hypercorn's keep-alive timer runs until a whole head has come: it closes it.
        assert read_to_close(sock) == b""


def test_http_1_0_is_answered_and_closed(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"}")


# -- Hypercorn's own server where the version differs ---------------------------------


@pytest.fixture
def hypercorns_own(monkeypatch: pytest.MonkeyPatch,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    monkeypatch.setattr(trio_responses.web.tcp_install, "LEAN_TCP_SERVER_FOR", "0.0.1")
    monkeypatch.setattr(hypercorn_run, "TCPServer", TCPServer)
    assert not install_tcp_server()
    with serve_scripted(tmp_path_factory) as server:
        yield server


def test_another_hypercorn_version_keeps_its_own_server(hypercorns_own: ServerThread) -> None:
    assert hypercorn_run.TCPServer is TCPServer
    before = channel_states(hypercorns_own)
    with connect(hypercorns_own) as sock:
        sock.sendall(stalled_request())
        data = read_until(sock, b"response.output_text.delta")
        assert connection_servers(hypercorns_own) == [TCPServer]
        assert channel_states(hypercorns_own) == before + 1
    # The app's one task serves it on Hypercorn's own channel too.
    wait_until(lambda: aborted(hypercorns_own, response_id(data)))
    wait_until(lambda: running(hypercorns_own) == 0)


def test_install_is_idempotent_and_leaves_someone_elses_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert install_tcp_server() and install_tcp_server()
    assert hypercorn_run.TCPServer is LeanTCPServer

    class Theirs(TCPServer):
        pass

    monkeypatch.setattr(hypercorn_run, "TCPServer", Theirs)
    assert not install_tcp_server()
    assert hypercorn_run.TCPServer is Theirs


async def test_the_app_of_the_hypercorn_cli_installs_it_on_its_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``hypercorn -k trio trio_responses:app``: the first call (the lifespan start-up,
    before Hypercorn's worker builds its listeners) installs it."""
    monkeypatch.setattr(hypercorn_run, "TCPServer", TCPServer)

    class Built(Exception):
        pass

    def settings() -> Any:
        raise Built  # where the real app would be built: enough for this test

    with pytest.raises(Built):
        await LazyApp(settings)({"type": "lifespan"}, None, None)
    assert hypercorn_run.TCPServer is LeanTCPServer


# -- Hypercorn's read paths it keeps: a read timeout, TLS ---------------------------------


# Set by endless() when the request to that path is told its client left.
DISCONNECTED: dict[str, trio.Event] = {}


async def endless(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app whose response never ends (and that notes the disconnect)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass
    DISCONNECTED[scope["path"]].set()


async def serve_endless(config: Config, nursery: trio.Nursery) -> int:
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    assert install_tcp_server()
    binds = await nursery.start(lambda task_status: hypercorn_serve(
        endless, config, task_status=task_status))  # type: ignore[arg-type]
    return int(binds[0].rsplit(":", 1)[1])


async def test_a_read_timeout_still_cuts_a_streaming_connection() -> None:
    """Hypercorn's read timeout wraps every read, also while a response streams
    (docs/RELIABILITY.md, trap 3): where it is set, it is kept."""
    config = Config()
    config.read_timeout = 0.2
    DISCONNECTED["/cut"] = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await serve_endless(config, nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while received := await stream.receive_some():
                data += received
        assert data.startswith(b"HTTP/1.1 200") and b"first" in data
        await stream.aclose()
        with trio.fail_after(5):
            await DISCONNECTED["/cut"].wait()
        nursery.cancel_scope.cancel()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp / "cert.pem", tmp / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


async def test_tls_streams_and_disconnects(tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    config = Config()
    config.certfile, config.keyfile = str(certfile), str(keyfile)
    client_context = ssl.create_default_context(cafile=str(certfile))
    DISCONNECTED["/tls"] = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await serve_endless(config, nursery)
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, client_context, server_hostname="localhost")
        await stream.send_all(b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while b"first" not in data:
                data += await stream.receive_some()
        assert data.startswith(b"HTTP/1.1 200")
        await tcp.aclose()  # the client leaves: the app is told
        with trio.fail_after(5):
            await DISCONNECTED["/tls"].wait()
        nursery.cancel_scope.cancel()
