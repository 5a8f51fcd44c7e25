"""SIGTERM with open streams and background work (RELIABILITY.md test plan row 14).

``python -m trio_responses`` drains on SIGTERM: it stops taking new responses (503),
gives live ones ``--shutdown-grace-seconds`` to finish, ends the rest with a terminal
event (cause ``shutdown``), saves them, and only then lets Hypercorn close connections.
So every open stream — foreground creates and background followers alike — ends with a
terminal event and then a clean end of body; the process exits 0 within the grace period
and leaves no process behind; after a restart the stored rows say how each ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import trio

from tests.reliability.conftest import Figures
from tests.reliability.procs import CLOSE, ServerProcess
from tests.reliability.wire import TERMINAL, Wire
from tests.support.events import check_stream
from tests.support.waiting import wait_until

GRACE = 2.0
SHUTDOWN = "The server shut down while this response was running."


class Reader:
    """One open stream, read to its end in the background."""

    def __init__(self, name: str, wire: Wire) -> None:
        self.name = name
        self.wire = wire
        self.events: list[dict[str, Any]] = []
        self.done_marker = False
        self.started = trio.Event()

    async def run(self) -> None:
        async with self.wire:
            while (batch := await self.wire.next_events()) is not None:
                for event in batch:
                    if event.data == "[DONE]":
                        self.done_marker = True
                    else:
                        self.events.append(event.json())
                if self.events:
                    self.started.set()
            assert not self.wire.parser.errors

    @property
    def terminal(self) -> str | None:
        kinds = [e["type"] for e in self.events if e["type"] in TERMINAL]
        return kinds[-1] if kinds else None


async def open_reader(nursery: trio.Nursery, port: int, name: str,
                      body: dict[str, Any] | None = None, path: str | None = None) -> Reader:
    wire = await Wire.connect(port)
    if path is not None:
        await wire.send_request("GET", path)
    else:
        await wire.post_json("/v1/responses", {"model": "scripted", "stream": True, **(body or {})})
    reader = Reader(name, wire)
    nursery.start_soon(reader.run)
    with trio.fail_after(10):
        await reader.started.wait()
    return reader


async def test_sigterm_drains_every_stream_and_exits_zero(
    server_factory: Callable[..., ServerProcess], figures: Figures
) -> None:
    server = server_factory(token_delay=0.05,
                            extra=["--shutdown-grace-seconds", str(GRACE)]).start()
    long_reply = {"input": "long", "max_output_tokens": 2000, "ignore_eos": True}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        background = [(await client.post("/v1/responses", json={
            "model": "scripted", "input": f"[[stall]] {i}", "background": True})).json()["id"]
            for i in range(2)]
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                readers = [
                    *[await open_reader(nursery, server.port, f"short {i}",
                                        {"input": "a short one"}) for i in range(3)],
                    *[await open_reader(nursery, server.port, f"long {i}", long_reply)
                      for i in range(3)],
                    *[await open_reader(nursery, server.port, f"stalled {i}",
                                        {"input": "[[stall]]"}) for i in range(3)],
                    *[await open_reader(nursery, server.port, f"follow {rid}",
                                        path=f"/v1/responses/{rid}?stream=true")
                      for rid in background],
                ]
                children = psutil.Process(server.pid).children(recursive=True)
                signalled = time.monotonic()
                assert server.proc is not None
                server.proc.terminate()
                # While draining: no new responses, and /health says so.
                await trio.to_thread.run_sync(lambda: wait_until(
                    lambda: httpx.get(server.base_url + "/health", headers=CLOSE,
                                      timeout=5).status_code == 503, what="the drain"))
                refused = await client.post("/v1/responses", json={
                    "model": "scripted", "input": "too late"})
                health = await client.get("/health")
                stored = await client.get(f"/v1/responses/{background[0]}")
                code = await trio.to_thread.run_sync(server.proc.wait, GRACE + 20)
                exited = time.monotonic() - signalled
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["type"]
    assert health.status_code == 503
    assert stored.status_code == 200, stored.text  # stored responses stay readable
    assert code == 0, server.log()
    assert exited < GRACE + 3, exited
    assert not [c for c in children if c.is_running()], "orphan processes"

    for reader in readers:
        assert reader.terminal is not None, (reader.name, reader.events[-3:])
        assert reader.events[-1]["type"] == reader.terminal, reader.name
        assert reader.done_marker, reader.name
        assert reader.wire.complete, f"{reader.name}: the body was cut, not ended"
        if not reader.name.startswith("follow"):
            check_stream(reader.events)
    outcome = {r.name: r.events[-1]["response"] for r in readers}
    for name, response in outcome.items():
        if name.startswith("short"):
            assert response["status"] == "completed", name
        else:
            assert response["status"] == "failed", (name, response["status"])
            assert response["error"]["message"] == SHUTDOWN

    # After a restart, the rows say the same: the drain saved them (not the sweep).
    server.start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for name, response in outcome.items():
            stored = (await client.get(f"/v1/responses/{response['id']}")).json()
            assert stored == response, name
    figures.add("streams open at SIGTERM", len(readers))
    figures.add("SIGTERM -> exit s (grace)", f"{exited:.2f} ({GRACE})")


async def test_sigterm_is_not_held_up_by_a_client_that_stopped_reading(
    server_factory: Callable[..., ServerProcess], figures: Figures
) -> None:
    """Hypercorn's writes are shielded and have no timeout: a client that stops reading
    (zero receive window) would hold a SIGTERM'd server forever. TCP_USER_TIMEOUT
    (--tcp-user-timeout-seconds) disconnects it, so the exit stays bounded."""
    server = server_factory(token_delay=0.0005, extra=[
        "--shutdown-grace-seconds", "1", "--tcp-user-timeout-seconds", "2",
        "--responses-stream-buffer-max-bytes", "65536"]).start()
    async with await Wire.connect(server.port, rcvbuf=4096) as wire:
        await wire.post_json("/v1/responses", {
            "model": "scripted", "input": "go", "stream": True,
            "max_output_tokens": 20_000, "ignore_eos": True})
        while not await wire.next_events():
            pass
        # The server is now blocked writing to this client: the client's window is closed,
        # and the server holds bytes for it that it cannot send.
        await trio.to_thread.run_sync(lambda: wait_until(lambda: wire.unsent() > 0,
                                                         what="the client's window to close"))
        signalled = time.monotonic()
        assert server.proc is not None
        server.proc.terminate()
        try:
            code = await trio.to_thread.run_sync(server.proc.wait, 15)
        finally:
            exited = time.monotonic() - signalled
    assert code == 0
    assert exited < 1 + 2 + 3, exited
    figures.add("SIGTERM -> exit with a non-reading client s (grace 1, tcp timeout 2)",
                round(exited, 2))
