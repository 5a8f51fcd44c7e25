"""Slow and hostile clients (RELIABILITY.md test plan rows 1-4 and 11, trap 5).

Against one server process (scripted engine, a 64 KiB stream buffer, a 1 MiB body limit),
each case must end in a clear 4xx or a clean close, bounded to a few seconds, and leave the
server healthy: ``/health`` 200, no 5xx counted in ``/metrics``, nothing left running.

What bounds a slow client here (Hypercorn 0.18 with this app's settings):
- request head: Hypercorn's keep-alive timer (5 s) runs from accept until a whole head has
  arrived, and is not reset by bytes, so a slow-loris head is closed after 5 s;
- idle keep-alive connection: closed after the same 5 s;
- request body: Quart's BODY_TIMEOUT (60 s in this app) bounds the whole body, then 408;
  a trickle does not extend it (checked in process with a 1 s timeout);
- a response nobody reads: the run ends when the unread bytes pass
  --responses-stream-buffer-max-bytes (memory stays bounded); Hypercorn has no write
  timeout and shields its writes, so the connection itself is released only by
  TCP_USER_TIMEOUT (--tcp-user-timeout-seconds, 4 s here, 60 s by default).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.reliability.conftest import Figures, Scale
from tests.reliability.procs import CLOSE, ServerProcess
from tests.reliability.wire import Wire, wait_closed
from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore

BUFFER = 64 * 1024
BODY_LIMIT = 1024 * 1024
TCP_USER_TIMEOUT = 4
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("hostile"), token_delay=0.0005, extra=[
        "--responses-stream-buffer-max-bytes", str(BUFFER),
        "--max-request-body-bytes", str(BODY_LIMIT),
        "--tcp-user-timeout-seconds", str(TCP_USER_TIMEOUT)]).start()
    try:
        yield proc
    finally:
        proc.stop()


def healthy(server: ServerProcess) -> None:
    assert httpx.get(server.base_url + "/health", headers=CLOSE).status_code == 200
    text = httpx.get(server.base_url + "/metrics", headers=CLOSE).text
    errors = [line for line in text.splitlines()
              if line.startswith("trio_responses_http_requests_total") and 'status="5' in line]
    assert not errors, errors
    assert server.metric("trio_responses_engine_running_requests") == 0


async def post_raw(port: int, body: bytes, headers: dict[str, str] | None = None,
                   path: str = "/v1/responses") -> tuple[int, Any, Wire]:
    """POST raw bytes; the status, the JSON answer and the (closed) wire."""
    async with await Wire.connect(port) as wire:
        try:
            await wire.send_request("POST", path, body,
                                    {"content-type": "application/json", **(headers or {})})
        except trio.BrokenResourceError:
            pass  # answered (and closed) before the whole body was sent
        status, value = await wire.read_json()
        return status, value, wire


def error_of(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict) and "error" in value, value
    error: dict[str, Any] = value["error"]
    assert error["message"] and error["type"], error
    return error


# -- a client that stops reading --------------------------------------------------------


async def test_a_client_that_stops_reading_ends_its_response(
    server: ServerProcess, scale: Scale, figures: Figures
) -> None:
    """Each client reads response.created, then nothing, with a small receive window:
    the run ends (failed, buffer limit), its engine request is aborted, memory is flat
    while the clients still hold their connections, and TCP_USER_TIMEOUT then releases
    them. (On a loaded machine the timeout can cut a connection before its buffer fills:
    that run ends cancelled, cause disconnect, its engine request aborted all the same.)"""
    count = scale.hostile_repeats

    def aborts() -> float:
        return sum(server.metric("trio_responses_engine_aborts_total", cause=cause)
                   for cause in ("overflow", "disconnect"))

    aborts_before = aborts()
    causes: dict[str, int] = {}
    before = server.resources()
    wires: list[Wire] = []
    ids: list[str] = []
    tokens: list[int] = []
    try:
        with trio.fail_after(30):
            for _ in range(count):
                wire = await Wire.connect(server.port, rcvbuf=4096)
                wires.append(wire)
                await wire.post_json("/v1/responses", {
                    "model": "scripted", "input": "go", "stream": True,
                    "max_output_tokens": 20_000, "ignore_eos": True})
                while not (events := await wire.next_events()):
                    pass
                ids.append(events[0].json()["response"]["id"])
            started = time.monotonic()
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
                for response_id in ids:
                    while True:
                        value = (await client.get(f"/v1/responses/{response_id}")).json()
                        if value["status"] != "in_progress":
                            break
                        await trio.sleep(0.05)
                    if value["status"] == "failed":
                        assert "--responses-stream-buffer-max-bytes" in \
                            value["error"]["message"], value
                        tokens.append(value["usage"]["output_tokens"])
                    else:
                        assert value["status"] == "cancelled", value
                    causes[value["status"]] = causes.get(value["status"], 0) + 1
            ended = time.monotonic() - started
            held = server.resources()
            await trio.sleep(1)
            later = server.resources()
            # TCP_USER_TIMEOUT then drops the connections the clients still hold.
            while True:
                fds = server.resources()["fds"]
                if fds <= before["fds"]:
                    break
                await trio.sleep(0.1)
            released = time.monotonic() - started
            assert fds == before["fds"]
    finally:
        for wire in wires:
            await wire.close("rst")
    assert aborts() == aborts_before + count
    assert causes.get("failed", 0) >= count // 2, causes
    assert server.metric("trio_responses_engine_running_requests") == 0
    # Bounded: the buffer limit and the socket buffers, per client; flat while held.
    assert held["rss"] - before["rss"] < count * (BUFFER + MiB) + 8 * MiB, (before, held)
    assert later["rss"] - held["rss"] < MiB, (held, later)
    figures.add("non-reading clients / all ended within s", f"{count} / {ended:.2f}")
    figures.add(f"their connections released by the server after s (tcp timeout "
                f"{TCP_USER_TIMEOUT})", round(released, 2))
    figures.add("ended by the buffer bound / by TCP_USER_TIMEOUT first",
                f"{causes.get('failed', 0)} / {causes.get('cancelled', 0)}")
    figures.add("tokens generated before the buffer bound hit (min-max)",
                f"{min(tokens)}-{max(tokens)}")
    figures.add("RSS before / with them held / 1 s later MiB",
                " / ".join(f"{r['rss'] / MiB:.1f}" for r in (before, held, later)))
    healthy(server)


# -- slow clients --------------------------------------------------------------------------


async def test_slow_loris_heads_and_idle_connections_are_closed(
    server: ServerProcess, figures: Figures
) -> None:
    """A head sent a byte at a time, a connection that sends nothing, and one left idle
    after a request: Hypercorn closes each within its 5 s keep-alive timeout."""
    closed_after: dict[str, float] = {}

    async def slow_head() -> None:
        async with await Wire.connect(server.port) as wire:
            started = time.monotonic()
            head = b"POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: " + b"a" * 100
            with trio.move_on_after(10):
                for byte in head:
                    try:
                        await wire.stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        break
                    await trio.sleep(0.1)
            assert await wait_closed(wire, 2)
            closed_after["slow head"] = time.monotonic() - started

    async def silent() -> None:
        async with await Wire.connect(server.port) as wire:
            started = time.monotonic()
            assert await wait_closed(wire, 10)
            closed_after["silent"] = time.monotonic() - started

    async def idle_after_request() -> None:
        async with await Wire.connect(server.port) as wire:
            await wire.send_request("GET", "/health")
            status, _ = await wire.read_json()
            assert status == 200
            started = time.monotonic()
            assert await wait_closed(wire, 10)
            closed_after["idle after a request"] = time.monotonic() - started

    async with trio.open_nursery() as nursery:
        for case in (slow_head, silent, idle_after_request):
            nursery.start_soon(case)
    for case, seconds in closed_after.items():
        assert 4 < seconds < 8, (case, seconds)
        figures.add(f"{case}: closed after s", round(seconds, 2))
    assert len(closed_after) == 3
    healthy(server)


def test_a_trickled_body_times_out_with_408(tmp_path: Path) -> None:
    """Quart's BODY_TIMEOUT bounds the whole body, however slowly it trickles (the app
    sets 60 s; 1 s here, in process)."""
    settings = Settings(engine="scripted", port=0, responses_ping_interval_seconds=0)
    # A store of its own: the default one is shared with whatever else runs here.
    store = SQLiteStore(tmp_path / "responses.sqlite3")
    with ServerThread(settings, engine=ScriptedEngine(model_name="scripted"),
                      store=store) as thread:
        thread.app.config["BODY_TIMEOUT"] = 1
        port = int(thread.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: x\r\n"
                         b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n")
            started = time.monotonic()
            sock.settimeout(0.2)
            answer = b""
            while time.monotonic() - started < 5 and b"\r\n\r\n" not in answer:
                try:
                    sock.sendall(b" ")
                    answer += sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert 0.9 < elapsed < 3, elapsed


# -- oversized and malformed bodies ------------------------------------------------------


async def test_oversized_bodies_get_413_and_are_not_buffered(server: ServerProcess) -> None:
    before = server.resources()["rss"]
    big = b'{"model": "scripted", "input": "' + b"x" * (BODY_LIMIT + 1) + b'"}'
    status, value, _ = await post_raw(server.port, big)
    assert status == 413 and error_of(value)
    # Chunked, without Content-Length: refused once the limit is passed; the client is
    # still sending 64 MiB when the answer comes.
    async with await Wire.connect(server.port) as wire:
        await wire.send_request("POST", "/v1/responses", None, {
            "content-type": "application/json", "transfer-encoding": "chunked"})
        chunk = b"%x\r\n%s\r\n" % (MiB, b"x" * MiB)
        with trio.move_on_after(10):
            try:
                for _ in range(64):
                    await wire.stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        raw = await wire.stream.receive_some(65536)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
    assert server.resources()["rss"] - before < 16 * MiB
    healthy(server)


def deep(depth: int) -> bytes:
    return b'{"model": "scripted", "input": ' + b"[" * depth + b"]" * depth + b"}"


BAD_BODIES: list[tuple[str, bytes]] = [
    ("100k-deep array", b"[" * 100_000),
    ("100k-deep input", deep(100_000)),
    ("100k-deep object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("invalid UTF-8", b'{"model": "scripted", "input": "\xff\xfe\xc3("}'),
    ("lone surrogate escape", b'{"model": "scripted", "input": "\\ud800"}'),
    ("1e400", b'{"model": "scripted", "input": "x", "temperature": 1e400}'),
    ("NaN", b'{"model": "scripted", "input": "x", "temperature": NaN}'),
    ("truncated", b'{"model": "scripted", "input": "x"'),
    ("not an object", b'"just a string"'),
    ("empty", b""),
    ("max_output_tokens over the limit", b'{"model": "scripted", "input": "x", '
     b'"max_output_tokens": 1048577}'),
    ("max_output_tokens 1e30", b'{"model": "scripted", "input": "x", '
     b'"max_output_tokens": 1000000000000000000000000000000}'),
    ("max_output_tokens negative", b'{"model": "scripted", "input": "x", '
     b'"max_output_tokens": -1}'),
    ("top_logprobs 21", b'{"model": "scripted", "input": "x", "top_logprobs": 21}'),
    ("17 metadata keys", json.dumps({"model": "scripted", "input": "x", "metadata": {
        f"k{i}": "v" for i in range(17)}}).encode()),
]


@pytest.mark.parametrize(("name", "body"), BAD_BODIES, ids=[n for n, _ in BAD_BODIES])
async def test_malformed_bodies_get_400(server: ServerProcess, name: str, body: bytes
                                        ) -> None:
    started = time.monotonic()
    status, value, _ = await post_raw(server.port, body)
    assert status == 400, (name, value)
    error_of(value)
    assert time.monotonic() - started < 5


async def test_wrong_content_type_gets_400(server: ServerProcess) -> None:
    body = json.dumps({"model": "scripted", "input": "x"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, value, _ = await post_raw(server.port, body, {"content-type": content_type})
        assert status == 400 and error_of(value)["code"] == "invalid_content_type", value


async def test_request_id_clash_and_thousands_of_tools(server: ServerProcess,
                                                       figures: Figures) -> None:
    body = json.dumps({"model": "scripted", "input": "x", "request_id": "abc"}).encode()
    status, value, _ = await post_raw(server.port, body, {"x-request-id": "xyz"})
    assert status == 400 and error_of(value)["code"] == "request_id_mismatch", value
    status, value, _ = await post_raw(server.port, body, {"x-request-id": "abc"})
    assert status == 200, value

    tools = [{"type": "function", "name": f"t{i}", "parameters": {}} for i in range(10_000)]
    body = json.dumps({"model": "scripted", "input": "x", "tools": tools}).encode()
    started = time.monotonic()
    status, value, _ = await post_raw(server.port, body)
    elapsed = time.monotonic() - started
    assert 400 <= status < 500, (status, value)
    figures.add("10k tools", f"{status} {error_of(value).get('code')} in {elapsed:.2f} s")
    assert elapsed < 10


def health_requests(server: ServerProcess) -> str:
    text = httpx.get(server.base_url + "/metrics", headers=CLOSE).text
    return "\n".join(line for line in text.splitlines() if 'route="/health"' in line
                     and line.startswith("trio_responses_http_requests_total"))


async def test_header_floods_are_refused_before_the_app(server: ServerProcess) -> None:
    before = await trio.to_thread.run_sync(health_requests, server)
    for head in (
        b"GET /health?" + b"a" * 70_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-h: v\r\n" * 10_000 + b"\r\n",
        b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"v" * 70_000 + b"\r\n\r\n",
    ):
        async with await Wire.connect(server.port) as wire:
            try:
                await wire.stream.send_all(head)
            except trio.BrokenResourceError:
                pass
            raw = await wire.stream.receive_some(65536)
        assert raw.split(b" ", 2)[1] in (b"400", b"431"), raw[:100]
    assert await trio.to_thread.run_sync(health_requests, server) == before
    healthy(server)


def test_server_is_healthy_after_all(server: ServerProcess) -> None:
    healthy(server)
    assert server.proc is not None and server.proc.poll() is None
    assert "Traceback" not in server.log(), server.log()[-2000:]
