"""Helpers for the gateway tests: servers with chosen settings, raw HTTP, SSE parsing.

Every server here is the real app under Hypercorn on loopback (``ServerThread``) with a
scripted engine and its own SQLite file. Clients must be closed (``with``): Hypercorn's
graceful shutdown waits for idle keep-alive connections.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore

MODEL = "scripted"


@contextmanager
def running_server(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    engine: ScriptedEngine | None = None,
    **settings: Any,
) -> Iterator[ServerThread]:
    """A server with ``Settings(**settings)`` over the test defaults."""
    values: dict[str, Any] = {"engine": "scripted", "port": 0,
                              "responses_ping_interval_seconds": 0,
                              "shutdown_grace_seconds": 2}
    values.update(settings)
    path = tmp_path_factory.mktemp("gateway") / "responses.sqlite3"
    with ServerThread(Settings(**values), engine=engine or ScriptedEngine(model_name=MODEL),
                      store=SQLiteStore(path)) as server:
        yield server


def engine_of(server: ServerThread) -> ScriptedEngine:
    assert isinstance(server.engine, ScriptedEngine)
    return server.engine


def sdk(server: ServerThread, api_key: str = "unused", **options: Any) -> openai.OpenAI:
    """The official SDK in strict mode; no retries unless asked for."""
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=api_key,
                         _strict_response_validation=True, **options)


def http(server: ServerThread, api_key: str | None = None, timeout: float = 10) -> httpx.Client:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout)


def assert_openai_error(response: httpx.Response, status: int, *, code: str | None = None,
                        param: str | None = None, type: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with exactly OpenAI's error object; returns the object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert error["param"] == param, error
    if type is not None:
        assert error["type"] == type, error
    return error


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01
               ) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# -- SSE ----------------------------------------------------------------------------

def stream_until(server: ServerThread, body: dict[str, Any], until: Callable[[bytes], bool],
                 api_key: str | None = None) -> bytes:
    """Create a streaming response, read its raw bytes until ``until(raw)``, hang up."""
    raw = b""
    with http(server, api_key) as client, client.stream(
            "POST", "/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            raw += chunk
            if until(raw):
                return raw
    raise AssertionError(f"the stream ended first: {raw[-300:]!r}")


def parse_sse(raw: bytes) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Events and comment lines of a complete SSE body, checking our framing rules:
    ``event:`` equals the payload's ``type``, every ``event:`` has its ``data:``, no
    ``id:``/``retry:``, the stream ends with ``data: [DONE]``."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    events: list[dict[str, Any]] = []
    comments: list[bytes] = []
    for block in raw[: -len(b"data: [DONE]\n\n")].split(b"\n\n"):
        if not block:
            continue
        lines = block.split(b"\n")
        if all(line.startswith(b":") for line in lines):
            comments.extend(lines)
            continue
        assert len(lines) == 2 and lines[0].startswith(b"event: ") \
            and lines[1].startswith(b"data: "), block[:200]
        event = json.loads(lines[1][len(b"data: "):])
        assert event["type"] == lines[0][len(b"event: "):].decode()
        events.append(event)
    return events, comments


def frames(raw: bytes) -> list[bytes]:
    """The complete frames (blank-line terminated blocks) in ``raw``."""
    return [block for block in raw.split(b"\n\n")[:-1] if block]


# -- raw HTTP -----------------------------------------------------------------------

def address(server: ServerThread) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw_connect(server: ServerThread, *, receive_buffer: int | None = None,
                timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(timeout)
    sock.connect(address(server))
    return sock


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_request(path: str, body: dict[str, Any], headers: dict[str, str] | None = None
                 ) -> bytes:
    data = json.dumps(body).encode()
    head = request_head("POST", path, {"Content-Type": "application/json",
                                       "Content-Length": str(len(data)), **(headers or {})})
    return head + data


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, rest


def read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    """The rest of a Content-Length body."""
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return rest[:length]
