"""Slow readers cost what their bound says (issue 13, finding 7).

The probe: one stalled stream added 41 MB to the server against a 16 MiB
``--responses-stream-buffer-max-bytes``, ten took it from 96 to 704 MB: the bound counted
the frames' bytes, not the event objects behind them (several times as much for small
text deltas), nor the chunk the stalled write still held. Here, against one server
process with a 1 MiB bound: streams whose clients read ``response.created`` and then
nothing, with a tiny receive window, each fill the bound and end (failed, engine
aborted); the server's RSS while they are still held grows by about the bound per
stream, not by several times it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.reliability.conftest import Figures
from tests.reliability.procs import CLOSE, ServerProcess
from tests.reliability.socket_wire import SocketWire
from tests.reliability.wire import Wire

BOUND = 1024 * 1024
MiB = 1024 * 1024
# Small words: each a text delta of ~190 bytes, the case where the objects behind a
# frame weigh most against its bytes.
WORDS = " ".join(["word"] * 60)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("slow"), token_delay=0, extra=[
        "--responses-stream-buffer-max-bytes", str(BOUND)]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def stall(server: ServerProcess, count: int) -> tuple[list[Wire], list[str]]:
    """``count`` streams whose clients stop reading after response.created."""
    wires: list[Wire] = []
    ids: list[str] = []
    for _ in range(count):
        wire = await Wire.connect(server.port, rcvbuf=4096)
        wires.append(wire)
        await wire.post_json("/v1/responses", {"model": "scripted", "input": WORDS,
                                               "stream": True, "ignore_eos": True,
                                               "max_output_tokens": 20_000})
        while not (events := await wire.next_events()):
            pass
        ids.append(events[0].json()["response"]["id"])
    return wires, ids


async def wait_failed(server: ServerProcess, ids: list[str]) -> None:
    for value in await server.ended(ids):
        assert value["status"] == "failed", value
        assert "--responses-stream-buffer-max-bytes" in value["error"]["message"]


@pytest.mark.parametrize("count", [1, 10])
async def test_a_stalled_stream_holds_about_its_bound(server: ServerProcess, count: int,
                                                      figures: Figures) -> None:
    # Warm up: the first requests allocate what every later one reuses.
    wires, ids = await stall(server, 1)
    await wait_failed(server, ids)
    for wire in wires:
        await wire.close("rst")
    before = server.resources()["rss"]
    wires, ids = await stall(server, count)
    try:
        with trio.fail_after(60):
            await wait_failed(server, ids)
        held = server.resources()["rss"]
    finally:
        for wire in wires:
            await wire.close("rst")
    growth = held - before
    figures.add(f"{count} stalled streams, bound {BOUND // MiB} MiB: RSS growth MiB",
                round(growth / MiB, 1))
    # The bound, and slack for what is not the buffer's (sockets, the run, allocator).
    assert growth < count * 1.5 * BOUND + 4 * MiB, growth / MiB
    async with httpx.AsyncClient(base_url=server.base_url, headers=CLOSE) as client:
        assert (await client.get("/health")).status_code == 200


async def test_a_stalled_socket_holds_about_its_bound_per_lane(
        server: ServerProcess, figures: Figures) -> None:
    """A WebSocket whose client reads each lane's response.created and then nothing: every
    lane's run fills the same bound as an SSE stream's and ends (failed, engine aborted),
    so the connection holds about lanes times the bound (the lanes running at once are
    bounded too, so this is bounded per connection)."""
    lanes = 4
    wires, ids = await stall(server, 1)  # warm up
    await wait_failed(server, ids)
    for wire in wires:
        await wire.close("rst")
    before = server.resources()["rss"]
    socket = await SocketWire.open(server.port, rcvbuf=4096)
    try:
        for lane in range(lanes):
            await socket.send({"type": "response.create", "model": "scripted", "input": WORDS,
                               "ignore_eos": True, "max_output_tokens": 20_000,
                               "stream_id": f"lane-{lane}"})
        ids = []
        with trio.fail_after(30):
            while len(ids) < lanes:
                event = await socket.receive()
                assert event is not None
                if event["type"] == "response.created":
                    ids.append(event["response"]["id"])
        with trio.fail_after(60):
            await wait_failed(server, ids)
        held = server.resources()["rss"]
    finally:
        await socket.drop("rst")
    growth = held - before
    figures.add(f"1 stalled socket, {lanes} lanes, bound {BOUND // MiB} MiB: RSS growth MiB",
                round(growth / MiB, 1))
    assert growth < lanes * 1.5 * BOUND + 4 * MiB, growth / MiB
