"""WebSocket mode against HTTP/SSE, with the engine out of the way (scripted, zero delay).

    python benchmarks/websocket.py [--quick] [--parts toolloop lanes disconnect] [flags]

Each part starts a fresh ``python -m trio_responses --engine scripted`` subprocess on
127.0.0.1 (as ``server_overhead.py`` does) and reads its CPU from psutil.

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

Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio
from websockets.sync.client import connect

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from benchmarks.server_overhead import Server, trio_responses
from tests.reliability.socket_wire import SocketWire

MODEL = "scripted"
TOOL = {"type": "function", "name": "f", "description": "A tool.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}
ABORTS = re.compile(r'^trio_responses_engine_aborts_total\{cause="disconnect"\} (\S+)$', re.M)
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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


def toolloop(args: argparse.Namespace) -> None:
    loops: dict[str, Callable[[Server, int], int]] = {
        "WebSocket": loop_over_socket, "HTTP/SSE": loop_over_http}
    for name, loop in loops.items():
        with trio_responses(args.python, 0) as server:
            loop(server, args.turns)  # warm up
            cpu, wall, turns = server.cpu_seconds(), time.perf_counter(), 0
            for _ in range(args.loops):
                turns += loop(server, args.turns)
            wall = time.perf_counter() - wall
            cpu = server.cpu_seconds() - cpu
        print(f"toolloop {name}: {args.loops} loops of {args.turns} tool turns + answer "
              f"({turns} responses): server CPU per turn {cpu / turns * 1000:.2f} ms, "
              f"wall per turn {wall / turns * 1000:.2f} ms")


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
    with trio_responses(args.python, 0) as server:
        peak = [server.rss()]

        async def main() -> list[int]:
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
                        sockets.start_soon(one_socket, server.port, args.words, limit, counts)
                nursery.cancel_scope.cancel()
            return counts

        base, cpu, wall = server.rss(), server.cpu_seconds(), time.perf_counter()
        counts = trio.run(main)
        wall = time.perf_counter() - wall
        cpu = server.cpu_seconds() - cpu
    print(f"lanes: {args.sockets} sockets x 4 lanes x {args.words + 2}-token replies: "
          f"wall {wall:.2f} s, server CPU {cpu:.2f} s, {counts[0]} events "
          f"({counts[0] / cpu:.0f} per server CPU-second), peak RSS +"
          f"{(peak[0] - base) / 2**20:.1f} MiB")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--parts", nargs="+", default=["toolloop", "lanes", "disconnect"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--disconnects", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.loops, args.sockets, args.disconnects = 3, 20, 10
    for part in args.parts:
        {"toolloop": toolloop, "lanes": lanes, "disconnect": disconnect}[part](args)


if __name__ == "__main__":
    main()
