"""Socket storm: the disconnect storm (test_disconnect_storm.py) over WebSockets.

500 sockets on the probe server (its own process, scripted engine, long replies), each
with one or two lanes running, are all held open at once (every lane has streamed), then
each is dropped with a FIN or a reset, no closing handshake. Afterwards the server must be
back where it started: no live response, no unfinished engine request, every lane's
engine request aborted exactly once, Trio tasks and file descriptors at the baseline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from tests.reliability.conftest import Figures, Scale
from tests.reliability.procs import CLOSE, ServerProcess
from tests.reliability.socket_wire import SocketWire
from tests.reliability.test_disconnect_storm import ONE_CLIENT_UNBOUNDED, percentile, settled

SOCKETS = 500
# No lane finishes by itself while the storm is held (1,000 tokens at the storm's pace).
LANE_REQUEST = {"type": "response.create", "model": "scripted", "input": "storm",
                "max_output_tokens": 1000, "ignore_eos": True}


@dataclass
class Socket:
    lanes: int
    style: str
    response_ids: list[str] = field(default_factory=list)
    dropped_at: float = 0.0
    ended_early: list[str] = field(default_factory=list)


async def one_socket(port: int, plan: Socket, connect: trio.CapacityLimiter,
                     held: Callable[[], None], go: trio.Event) -> None:
    async with connect:
        socket = await SocketWire.open(port)
    try:
        for lane in range(plan.lanes):
            await socket.send({**LANE_REQUEST, "stream_id": f"lane-{lane}"})
        streaming: set[str] = set()
        while len(streaming) < plan.lanes:
            event = await socket.receive()
            assert event is not None, "the server closed a socket the client still read"
            if event["type"] == "response.created":
                plan.response_ids.append(event["response"]["id"])
            elif event["type"] == "response.output_text.delta":
                streaming.add(event["stream_id"])
            elif event["type"] in ("response.completed", "response.failed", "error"):
                plan.ended_early.append(event["type"])
        held()
        await go.wait()
    finally:
        plan.dropped_at = await socket.drop(plan.style)


async def socket_storm(port: int, count: int, seed: int,
                       on_held: Callable[[], Awaitable[None]] | None = None) -> list[Socket]:
    """``count`` sockets held streaming, then all dropped at once (``on_held`` runs just
    before the drop)."""
    rng = random.Random(seed)
    plans = [Socket(lanes=rng.choice((1, 2)), style=rng.choice(("fin", "rst")))
             for _ in range(count)]
    connect = trio.CapacityLimiter(64)
    go, all_held = trio.Event(), trio.Event()
    holding = [0]

    def held() -> None:
        holding[0] += 1
        if holding[0] == count:
            all_held.set()

    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            for plan in plans:
                nursery.start_soon(one_socket, port, plan, connect, held, go)
            await all_held.wait()
            if on_held is not None:
                await on_held()
            go.set()
    return plans


# Started when first needed, then the process's for good: the flusher at the first frame
# a waiting lane's run hands over, the scripted engine's steps at the first stream that
# joins them (engine/scripted_steps.py).
FOR_GOOD = ("direct send flusher", "scripted engine steps")


async def system_tasks(server: ServerProcess) -> int:
    """The tasks the warm-up started for the process's life (the flusher of
    web/direct_send.py, the scripted engine's steps)."""
    def names() -> list[str]:
        probe: dict[str, Any] = httpx.get(server.base_url + "/_probe?names=1", timeout=30,
                                          headers=CLOSE).json()
        return list(probe["task_names"])
    running = await trio.to_thread.run_sync(names)
    return sum(name in running for name in FOR_GOOD)


async def baseline(server: ServerProcess, tasks: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The probe and resources once the warm-up's connections are all gone: back to the
    ``tasks`` the fresh server ran. (Hypercorn ends a dropped socket's connection when its
    ping task next wakes, up to one ping interval later.)"""
    with trio.fail_after(60):
        while True:
            probe, resources = await settled(server)
            if probe["tasks"] <= tasks:
                return probe, resources
            await trio.sleep(0.5)


async def test_socket_storm(server_factory: Callable[..., ServerProcess], scale: Scale,
                            figures: Figures) -> None:
    server = server_factory(probe=True, token_delay=scale.storm_token_delay,
                            extra=ONE_CLIENT_UNBOUNDED).start()
    fresh = await trio.to_thread.run_sync(server.probe)
    await socket_storm(server.port, 20, seed=1)  # warm up, then the baseline
    base_probe, base = await baseline(server, fresh["tasks"] + await system_tasks(server))

    started = time.monotonic()
    plans = await socket_storm(server.port, SOCKETS, seed=2)
    held_seconds = time.monotonic() - started
    probe, after = await settled(server, base_probe, base, seconds=60)

    assert not [p.ended_early for p in plans if p.ended_early]
    assert probe["live"] == 0 and probe["running"] == 0, probe
    storm_ids = set(probe["submitted"]) - set(base_probe["submitted"])
    lane_ids = {rid for plan in plans for rid in plan.response_ids}
    assert lane_ids == storm_ids and len(lane_ids) == sum(p.lanes for p in plans)
    aborted = probe["aborted"]
    assert lane_ids <= set(aborted), len(lane_ids - set(aborted))
    assert probe["aborted_total"] - base_probe["aborted_total"] == len(lane_ids)
    assert probe["tasks"] == base_probe["tasks"], (base_probe["tasks"], probe["tasks"])
    assert after["fds"] <= base["fds"], (base, after)

    latencies = [aborted[rid] - plan.dropped_at for plan in plans
                 for rid in plan.response_ids]
    figures.add("sockets (lanes) dropped mid-stream", f"{len(plans)} ({len(lane_ids)})")
    figures.add("all held after s", round(held_seconds, 2))
    figures.add("fds baseline / after", f"{base['fds']} / {after['fds']}")
    figures.add("Trio tasks baseline / after", f"{base_probe['tasks']} / {probe['tasks']}")
    for q in (0.5, 0.99):
        figures.add(f"socket drop->abort p{round(q * 100)} ms",
                    round(percentile(latencies, q) * 1000, 2))
    assert percentile(latencies, 0.99) < 20.0, sorted(latencies)[-5:]
