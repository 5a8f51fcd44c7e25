"""Helpers for the gateway tests: plain HTTP clients, raw HTTP, raw SSE bytes.

Every server here is the real app under Hypercorn on loopback
(``tests.support.server.serve_scripted``) with a scripted engine and its own SQLite file.
Clients must be closed (``with``): Hypercorn's graceful shutdown waits for idle
keep-alive connections.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.sdk import POOL
from tests.support.server import ServerThread

MODEL = "scripted"


def http(server: ServerThread, api_key: str | None = None, timeout: float = 10) -> httpx.Client:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout, limits=POOL)


# -- SSE ----------------------------------------------------------------------------

def stream_until(server: ServerThread, body: dict[str, Any], until: Callable[[bytes], bool],
                 api_key: str | None = None, headers: dict[str, str] | None = None) -> bytes:
    """Create a streaming response, read its raw bytes until ``until(raw)``, hang up."""
    raw = b""
    with http(server, api_key) as client, client.stream(
            "POST", "/v1/responses", json={**body, "stream": True},
            headers=headers) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            raw += chunk
            if until(raw):
                return raw
    raise AssertionError(f"the stream ended first: {raw[-300:]!r}")


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
    # A loopback name: a server without keys answers no other Host (DNS rebinding).
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
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
