"""Disconnects in the narrow windows of a create: each must still end the run.

A stored create writes its row in a worker thread, which Trio does not interrupt: a
disconnect that arrives meanwhile is delivered as a cancellation only at the handler's
next checkpoint, which may be after the run was started and before Quart began to read
its body. The run must still be ended (cause ``disconnect``) and its engine request
aborted, or it keeps generating for nobody.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import pytest
import trio

from tests.support.memory_store import MemoryStore
from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store.base import StoredResponse


class SlowCreateStore(MemoryStore):
    """Writes a new row, then spends ``delay`` seconds in a worker thread (a busy disk),
    with no checkpoint after it: like SQLiteStore.create, the caller cannot be cancelled
    while the thread runs, and nothing raises the cancellation before it returns."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def create(self, record: StoredResponse) -> None:
        await super().create(record)
        await trio.to_thread.run_sync(time.sleep, self.delay)


@pytest.fixture
def slow_server() -> Iterator[tuple[ServerThread, ScriptedEngine]]:
    engine = ScriptedEngine(token_delay=0.05, model_name="scripted")
    settings = Settings(engine="scripted", port=0, responses_ping_interval_seconds=0,
                        shutdown_grace_seconds=1)
    with ServerThread(settings, engine=engine, store=SlowCreateStore(0.3)) as server:
        yield server, engine


def port_of(server: ServerThread) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def drop(port: int, body: bytes, style: str, after: float) -> None:
    """Send a streaming create, wait ``after`` seconds, then drop the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"content-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(after)
        if style == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("style", ["fin", "rst"])
def test_disconnect_while_the_row_is_written_ends_the_run(
    slow_server: tuple[ServerThread, ScriptedEngine], style: str
) -> None:
    server, engine = slow_server
    registry = server.app_state.service.registry
    body = json.dumps({"model": "scripted", "input": "stalled [[stall]]",
                       "stream": True}).encode()
    before = server.call(lambda: len(engine.requests))
    drop(port_of(server), body, style, after=0.1)  # the row is being written meanwhile

    def ended() -> bool:
        if len(engine.requests) == before:
            return False
        return engine.requests[before].request_id in engine.aborted and not registry.live()

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not server.call(ended):
        time.sleep(0.05)
    request_id = server.call(lambda: engine.requests[before].request_id)
    assert server.call(registry.live) == [], "the run outlived its client"
    assert request_id in server.call(lambda: list(engine.aborted))
    assert server.call(lambda: engine.statistics().running) == 0
