"""WebSocket mode against HTTP/SSE, with the engine out of the way (scripted, zero delay).

    python benchmarks/websocket.py [--quick] [--parts toolloop lanes disconnect paced burst]

Each part starts a fresh ``python -m trio_responses --engine scripted`` subprocess on
127.0.0.1 (as ``server_overhead.py`` does) and reads its CPU from psutil. ``--compare DIR
--rounds N`` (every part but disconnect) serves another checkout too (say ``git archive main``
unpacked), alternating; ``--py-spy DIR`` (paced, burst) records each server's profile.

* **toolloop**: an agent loop of ``--turns`` model turns, each a function call whose
  output the client sends back (the scripted engine's ``[[call:f]] [[then]] ...``
  script), then the answer; each turn continues the last by ``previous_response_id``.
  Once over one WebSocket (``response.create`` per turn), once over HTTP/SSE (a POST
  with ``stream: true`` per turn, one keep-alive connection). Repeated ``--loops`` times:
  server CPU and wall time per turn.
* **lanes**: ``--sockets`` sockets with 4 lanes each, every lane one response of
  ``--words`` tokens, all at once: wall time, server CPU, peak RSS, events per server
  CPU-second.
* **disconnect**: ``--disconnects`` times, a socket with 4 lanes all streaming (stalled
  after their first token) is dropped (FIN); ``/metrics`` is polled until all four
  engine requests are counted aborted (cause ``disconnect``): drop → fourth abort, p50 /
  p99 (an upper bound: it includes a /metrics round trip).

* **paced**: one frame per event, as with a live engine (one token per engine step): the
  scripted engine pauses ``--token-delay`` between tokens; ``--paced-sockets`` sockets with
  ``--paced-lanes`` lanes each stream ``--paced-words``-token replies, ``--paced-replies``
  times over: server CPU per WebSocket message (events per server CPU-second).
* **burst**: ``--burst`` sockets with one or two lanes each (the reliability suite's socket
  storm: ``tests/reliability/test_socket_storm.py``), all streaming (``--burst-delay``
  between tokens), then all dropped at once (FIN or reset); drop → engine abort p50 / p99
  from the probe server's abort times (``tests/reliability/probe.py``, exact: no polling),
  and the server CPU the teardown took.

Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import trio
from websockets.sync.client import connect
from wsproto.events import Ping, TextMessage

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from benchmarks import server_overhead
from benchmarks.server_overhead import (
    HOST,
    ROOT,
    Server,
    free_port,
    profiled,
    started,
    trio_responses,
)
from tests.reliability.socket_wire import SocketWire

MODEL = "scripted"
TOOL = {"type": "function", "name": "f", "description": "A tool.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}
ABORTS = re.compile(r'^trio_responses_engine_aborts_total\{cause="disconnect"\} (\S+)$', re.M)
RUNNING = re.compile(r"^trio_responses_engine_running_requests (\S+)$", re.M)
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


T = TypeVar("T")


def measured(server: Server, work: Callable[[], T]) -> tuple[T, float, float]:
    """``work()``'s result, and the server CPU and the wall seconds it took."""
    cpu, wall = server.cpu_seconds(), time.perf_counter()
    result = work()
    return result, server.cpu_seconds() - cpu, time.perf_counter() - wall


# -- toolloop ------------------------------------------------------------------------------

def script(turns: int) -> str:
    return " [[then]] ".join(["[[call:f]]"] * turns)


def next_input(final: dict[str, Any]) -> list[dict[str, Any]] | None:
    calls = [item for item in final["output"] if item["type"] == "function_call"]
    if not calls:
        return None
    return [{"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}
            for call in calls]


def loop_over_socket(server: Server, turns: int) -> int:
    done = 0
    with connect(f"ws://127.0.0.1:{server.port}/v1/responses", max_size=None) as socket:
        body: dict[str, Any] = {"type": "response.create", "model": MODEL, "tools": [TOOL],
                                "input": script(turns)}
        while True:
            socket.send(json.dumps(body))
            while True:
                event = json.loads(socket.recv())
                if event["type"] in TERMINAL:
                    break
            done += 1
            following = next_input(event["response"])
            if following is None:
                return done
            body = {"type": "response.create", "model": MODEL, "tools": [TOOL],
                    "input": following, "previous_response_id": event["response"]["id"]}


def loop_over_http(server: Server, turns: int) -> int:
    done = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        body: dict[str, Any] = {"model": MODEL, "tools": [TOOL], "input": script(turns),
                                "stream": True}
        while True:
            final = None
            with client.stream("POST", "/v1/responses", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        event = json.loads(line[6:])
                        if event["type"] in TERMINAL:
                            final = event["response"]
            assert final is not None
            done += 1
            following = next_input(final)
            if following is None:
                return done
            body = {"model": MODEL, "tools": [TOOL], "input": following, "stream": True,
                    "previous_response_id": final["id"]}


def run_loops(loop: Callable[[Server, int], int], server: Server, turns: int, loops: int
              ) -> int:
    return sum(loop(server, turns) for _ in range(loops))


def toolloop(args: argparse.Namespace) -> None:
    loops: dict[str, Callable[[Server, int], int]] = {
        "WebSocket": loop_over_socket, "HTTP/SSE": loop_over_http}
    for kind, loop in loops.items():
        for name, start in servers(args, partial(trio_responses, args.python, 0)):
            with start as server:
                loop(server, args.turns)  # warm up
                turns, cpu, wall = measured(server, partial(
                    run_loops, loop, server, args.turns, args.loops))
            print(f"toolloop {kind} ({name}): {args.loops} loops of {args.turns} tool turns + "
                  f"answer ({turns} responses): server CPU per turn "
                  f"{cpu / turns * 1000:.2f} ms, wall per turn {wall / turns * 1000:.2f} ms "
                  f"(load {psutil.getloadavg()[0]:.1f})")


# -- lanes ---------------------------------------------------------------------------------

async def one_socket(port: int, words: int, connect_limit: trio.CapacityLimiter,
                     counts: list[int]) -> None:
    async with connect_limit:
        socket = await SocketWire.open(port)
    try:
        for lane in range(4):
            await socket.send({"type": "response.create", "model": MODEL,
                               "input": " ".join(["w"] * words), "stream_id": f"l{lane}"})
        ended = 0
        while ended < 4:
            event = await socket.receive()
            assert event is not None, "socket closed"
            counts[0] += 1
            if event["type"] in TERMINAL:
                ended += 1
    finally:
        await socket.drop()


def lanes(args: argparse.Namespace) -> None:
    for name, start in servers(args, partial(trio_responses, args.python, 0)):
        with start as server:
            peak = [server.rss()]

            async def main(server: Server = server, peak: list[int] = peak) -> list[int]:
                counts = [0]
                limit = trio.CapacityLimiter(64)
                async with trio.open_nursery() as nursery:
                    async def watch() -> None:
                        while True:
                            peak[0] = max(peak[0], server.rss())
                            await trio.sleep(0.05)
                    nursery.start_soon(watch)
                    async with trio.open_nursery() as sockets:
                        for _ in range(args.sockets):
                            sockets.start_soon(one_socket, server.port, args.words, limit,
                                               counts)
                    nursery.cancel_scope.cancel()
                return counts

            base = server.rss()
            counts, cpu, wall = measured(server, partial(trio.run, main))
        print(f"lanes ({name}): {args.sockets} sockets x 4 lanes x {args.words + 2}-token "
              f"replies: wall {wall:.2f} s, server CPU {cpu:.2f} s, {counts[0]} events "
              f"({counts[0] / cpu:.0f} per server CPU-second), peak RSS +"
              f"{(peak[0] - base) / 2**20:.1f} MiB (load {psutil.getloadavg()[0]:.1f})")


# -- disconnect ----------------------------------------------------------------------------

def disconnect(args: argparse.Namespace) -> None:
    with trio_responses(args.python, 0) as server, \
            httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as metrics:

        def aborted() -> float:
            match = ABORTS.search(metrics.get("/metrics").text)
            return float(match.group(1)) if match else 0.0

        async def one() -> float:
            socket = await SocketWire.open(server.port)
            for lane in range(4):
                await socket.send({"type": "response.create", "model": MODEL,
                                   "input": "[[stall]]", "stream_id": f"l{lane}"})
            streaming: set[str] = set()
            while len(streaming) < 4:
                event = await socket.receive()
                assert event is not None
                if event["type"] == "response.output_text.delta":
                    streaming.add(event["stream_id"])
            before = aborted()
            dropped = time.time()
            await socket.drop("fin")
            while aborted() < before + 4:
                pass
            return time.time() - dropped

        async def main() -> list[float]:
            return [await one() for _ in range(args.disconnects)]

        times = trio.run(main)
    print(f"disconnect: {args.disconnects} sockets with 4 streaming lanes dropped: all four "
          f"engine requests aborted within p50 {percentile(times, 0.5) * 1000:.1f} ms / p99 "
          f"{percentile(times, 0.99) * 1000:.1f} ms (including a /metrics round trip)")


# -- paced: one frame per event --------------------------------------------------------------

def servers(args: argparse.Namespace, start: Callable[[Path], AbstractContextManager[Server]]
            ) -> Iterator[tuple[str, AbstractContextManager[Server]]]:
    """This checkout's server and (with --compare) the other's, alternating --rounds times."""
    for _ in range(args.rounds):
        yield args.label, start(ROOT)
        if args.compare:
            yield args.compare_label, start(args.compare)


async def paced_socket(port: int, lanes: int, words: int, replies: int, counts: list[int]
                       ) -> None:
    """One socket: ``lanes`` lanes, each running ``replies`` responses one after another;
    counts the messages (parsing only the terminal ones' type)."""
    socket = await SocketWire.open(port)
    text = " ".join(["w"] * words)
    try:
        for lane in range(lanes):
            await socket.send({"type": "response.create", "model": MODEL, "input": text,
                               "stream_id": f"l{lane}"})
        left = {f"l{lane}": replies for lane in range(lanes)}
        while left:
            for event in await socket._events():
                if isinstance(event, Ping):
                    await socket.wire.stream.send_all(socket.ws.send(event.response()))
                if not isinstance(event, TextMessage):
                    continue
                assert event.message_finished, "one frame per message"
                counts[0] += 1
                if event.data.startswith(TERMINAL_PREFIXES):
                    lane = json.loads(event.data)["stream_id"]
                    left[lane] -= 1
                    if left[lane]:
                        await socket.send({"type": "response.create", "model": MODEL,
                                           "input": text, "stream_id": lane})
                    else:
                        del left[lane]
            assert not socket.closed, "socket closed"
    finally:
        await socket.drop()


TERMINAL_PREFIXES = tuple(f'{{"type":"{kind}"' for kind in TERMINAL)


def paced(args: argparse.Namespace) -> None:
    server_overhead.TOKEN_DELAY = args.token_delay
    print(f"paced: {args.paced_sockets} sockets x {args.paced_lanes} lanes x "
          f"{args.paced_replies} replies of {args.paced_words + 2} tokens, "
          f"{args.token_delay * 1000:g} ms between tokens (one frame per event)")
    for name, start in servers(args, partial(trio_responses, args.python, 0)):
        with start as server, profiled(server.ps.pid, f"paced-{name}"):
            counts = [0]

            async def main(port: int = server.port, counts: list[int] = counts) -> None:
                async with trio.open_nursery() as nursery:
                    for _ in range(args.paced_sockets):
                        nursery.start_soon(paced_socket, port, args.paced_lanes,
                                           args.paced_words, args.paced_replies, counts)

            _, cpu, wall = measured(server, partial(trio.run, main))
        load = psutil.getloadavg()[0]
        print(f"  {name}: {counts[0]} messages in {wall:.1f} s, server CPU {cpu:.2f} s "
              f"({cpu / wall:.2f} cores): {cpu / counts[0] * 1e6:.1f} µs per message, "
              f"{counts[0] / cpu:,.0f} per server CPU-second (load {load:.1f})")
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps({
                    "part": "websocket paced", "server": name, "token_delay": args.token_delay,
                    "sockets": args.paced_sockets, "lanes": args.paced_lanes,
                    "events_per_cpu_second": counts[0] / cpu,
                    "cpu_us_per_event": cpu / counts[0] * 1e6, "load": load}) + "\n")


# -- burst: every socket dropped at once ---------------------------------------------------

def probe_server(python: str, delay: float, root: Path) -> AbstractContextManager[Server]:
    port = free_port()
    return started([python, "-m", "tests.reliability.probe", "--engine", "scripted",
                    "--model", MODEL, "--scripted-token-delay", str(delay), "--host", HOST,
                    "--port", str(port), "--store-path", "{tmp}/store.sqlite3",
                    "--log-level", "warning", "--max-responses-per-key", "0",
                    "--max-streams-per-key", "0"], port, root)


def burst(args: argparse.Namespace) -> None:
    from tests.reliability.test_socket_storm import socket_storm

    print(f"burst: {args.burst} sockets (1-2 lanes each, a token every "
          f"{args.burst_delay * 1000:g} ms) all dropped at once, FIN or reset")
    for name, start in servers(args, partial(probe_server, args.python, args.burst_delay)):
        with start as server, httpx.Client(base_url=f"http://127.0.0.1:{server.port}",
                                           headers={"connection": "close"}) as http:
            trio.run(socket_storm, server.port, 20, 1)  # warm up
            time.sleep(1.0)
            with profiled(server.ps.pid, f"burst-{name}"):
                cpu = [0.0, 0.0]

                async def dropping(cpu: list[float] = cpu, server: Server = server) -> None:
                    # A second of the held storm streaming: how busy it keeps the server.
                    before = server.cpu_seconds()
                    await trio.sleep(1.0)
                    cpu[0] = server.cpu_seconds()
                    cpu[1] = cpu[0] - before

                plans = trio.run(socket_storm, server.port, args.burst, 2, dropping)
                deadline = time.monotonic() + 60
                # /metrics, not /_probe (which walks every task) until nothing runs.
                while time.monotonic() < deadline:
                    match = RUNNING.search(http.get("/metrics").text)
                    if match and float(match.group(1)) == 0:
                        break
                    time.sleep(0.02)
                teardown = server.cpu_seconds() - cpu[0]
                state = http.get("/_probe").json()
        aborted = state["aborted"]
        latencies = [aborted[rid] - plan.dropped_at for plan in plans
                     for rid in plan.response_ids if rid in aborted]
        lanes = sum(len(plan.response_ids) for plan in plans)
        load = psutil.getloadavg()[0]
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(f"  {name}: {len(plans)} sockets, {lanes} lanes ({len(latencies)} aborted): "
              f"drop -> abort min {min(latencies) * 1000:.1f} / p50 {p50:.1f} / p99 {p99:.1f} "
              f"/ max {max(latencies) * 1000:.1f} ms; server CPU from the drop to the last "
              f"abort {teardown:.2f} s, {teardown / lanes * 1e3:.2f} ms a lane; server busy "
              f"{cpu[1]:.2f} cores while all streamed (load {load:.1f})")
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps({
                    "part": "websocket burst", "server": name, "sockets": len(plans),
                    "lanes": lanes, "p50_ms": p50, "p99_ms": p99,
                    "teardown_cpu_ms_per_lane": teardown / lanes * 1e3,
                    "held_busy_cores": cpu[1], "load": load}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--parts", nargs="+", default=["toolloop", "lanes", "disconnect"],
                        choices=["toolloop", "lanes", "disconnect", "paced", "burst"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--disconnects", type=int, default=100)
    parser.add_argument("--token-delay", type=float, default=0.005,
                        help="paced: seconds between the scripted engine's tokens")
    parser.add_argument("--paced-sockets", type=int, default=16)
    parser.add_argument("--paced-lanes", type=int, default=1)
    parser.add_argument("--paced-words", type=int, default=400)
    parser.add_argument("--paced-replies", type=int, default=2)
    parser.add_argument("--burst", type=int, default=500, help="burst: sockets dropped")
    parser.add_argument("--burst-delay", type=float, default=0.2,
                        help="burst: seconds between each lane's tokens")
    parser.add_argument("--compare", type=Path,
                        help="also serve this checkout, alternating (every part but disconnect)")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--compare-label", default="compared")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="paced, burst: record each server with py-spy into DIR")
    parser.add_argument("--json", type=Path, help="paced, burst: append the figures here")
    args = parser.parse_args()
    server_overhead.PROFILES = args.py_spy
    if args.quick:
        args.loops, args.sockets, args.disconnects = 3, 20, 10
        args.paced_sockets, args.paced_words, args.paced_replies = 8, 200, 1
        args.burst = 100
    print(f"load average {psutil.getloadavg()[0]:.1f} at start")
    parts: dict[str, Callable[[argparse.Namespace], None]] = {
        "toolloop": toolloop, "lanes": lanes, "disconnect": disconnect, "paced": paced,
        "burst": burst}
    for part in args.parts:
        parts[part](args)


if __name__ == "__main__":
    main()
