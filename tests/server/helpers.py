"""Helpers for the server tests: a plain HTTP client, engine state, polling a status.

Servers, SDK clients, SSE reading, waiting and error assertions are shared with the
other directories, in ``tests/support/``. Every stream these tests read goes through
``tests.support.events.check_stream``, and through ``tests.support.sse``'s framing checks
where the test reads SSE itself.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import httpx
import openai

from tests.support.sdk import POOL
from tests.support.server import ServerThread, engine_of
from tests.support.waiting import wait_until

MODEL = "scripted"
T = TypeVar("T")


def http_client(server: ServerThread, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=timeout,
                        headers={"authorization": "Bearer test"}, limits=POOL)


def on_server(server: ServerThread, fn: Callable[[], T]) -> T:
    """``fn`` run on the server's Trio thread (engine state is only read there)."""
    return server.call(fn)


def aborted(server: ServerThread, response_id: str) -> bool:
    engine = engine_of(server)
    return on_server(server, lambda: response_id in engine.aborted)


def running(server: ServerThread) -> int:
    engine = engine_of(server)
    return on_server(server, lambda: engine.statistics().running)


def wait_status(client: openai.OpenAI, response_id: str, statuses: Iterable[str],
                timeout: float = 5.0) -> list[str]:
    """Retrieve until the status is one of ``statuses``; every status seen, in order."""
    wanted = set(statuses)
    seen: list[str] = []

    def reached() -> bool:
        status = client.responses.retrieve(response_id).status
        assert status is not None
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in wanted

    wait_until(reached, timeout, f"status in {sorted(wanted)} (seen {seen})")
    return seen


def types_of(events: Iterable[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """What a raw socket receives (after ``data``, already read) up to ``marker``."""
    while marker not in data:
        received = sock.recv(1 << 16)
        assert received, f"closed before {marker!r}: {data[-300:]!r}"
        data += received
    return data
