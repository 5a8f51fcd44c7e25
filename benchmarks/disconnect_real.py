"""Disconnects through the real engine: trio_responses vs vLLM's own server.

    .venv/bin/python benchmarks/disconnect_real.py [--rounds 3] [--streams 16] [--json FILE]

Each server is started here in turn (ours, vLLM, then vLLM, ours…: ``--rounds``
alternations, each round starting with the next server), one at a time on 127.0.0.1,
built by ``benchmarks/bench_vllm.py``'s ``make_servers`` from the same arguments
(``--max-model-len``; ``--before CHECKOUT`` adds that checkout's trio_responses as a third
server, for before/after figures in one run): the default model folder, the same engine
flags, each start warmed up before it is measured.
Per round: ``--streams`` streaming ``/v1/responses`` requests with long outputs
(``max_output_tokens`` ``--tokens``, ``ignore_eos``) are opened at once, each is read
until ``--deltas`` ``response.output_text.delta`` events have arrived, then all of them
are dropped together (each request's own connection closed). ``/metrics`` is then polled
every ``--poll`` seconds (50 ms) until the engine's running-requests gauge reads 0 —
``trio_responses_engine_running_requests`` on ours, ``vllm:num_requests_running`` on
vLLM's — and the seconds from the last drop to that reading are the round's figure.
The gauge read just before the drop is printed too (it should be ``--streams``).

The poll interval bounds the resolution: a figure is the time to the first poll that
reads 0, so it is up to one interval late. A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

# Run as a script, the repository root is not on the path: bench_vllm is imported from it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_vllm import MODEL, PROMPT, Server, add_server_arguments, make_servers

GAUGES = {"trio_responses": "trio_responses_engine_running_requests",
          "before": "trio_responses_engine_running_requests",
          "vllm": "vllm:num_requests_running"}


@dataclass
class Round:
    server: str
    running_before_drop: float
    seconds_to_zero: float


def gauge_value(text: str, name: str) -> float:
    """Sum of a gauge's samples (vLLM labels its series per engine and model)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(None, 1)[1])
    return total


async def read_gauge(client: httpx.AsyncClient, name: str) -> float:
    response = await client.get("/metrics")
    response.raise_for_status()
    return gauge_value(response.text, name)


async def drain(lines: AsyncIterator[str]) -> None:
    async for _ in lines:
        pass


async def stream_then_drop(base_url: str, tokens: int, deltas: int, streams: int,
                           ready: list[int], all_ready: trio.Event, drop: trio.Event,
                           dropped_at: list[float]) -> None:
    body = {"model": MODEL, "input": PROMPT, "stream": True, "max_output_tokens": tokens,
            "temperature": 0, "ignore_eos": True, "store": False}
    # One client per stream: closing it closes the stream's own connection for sure,
    # rather than leaving it to a pool's reuse rules.
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
        async with client.stream("POST", "/v1/responses", json=body) as response:
            response.raise_for_status()
            seen = 0
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("data: {") and '"response.output_text.delta"' in line:
                    seen += 1
                    if seen == deltas:
                        break
            if seen < deltas:
                raise RuntimeError(f"stream ended after {seen} deltas")
            ready.append(1)
            if len(ready) == streams:
                all_ready.set()
            # Keep reading until the drop, so every stream is still live when it is
            # dropped: in a run that left them unread, one round of ours read 3 running
            # (not 15) before the drop (a backed-up stream ended early, cause not traced).
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, lines)
                await drop.wait()
                nursery.cancel_scope.cancel()
    dropped_at.append(time.perf_counter())


async def measure(server: Server, streams: int, tokens: int, deltas: int,
                  give_up_after: float, poll: float) -> Round:
    name = GAUGES[server.name]
    ready: list[int] = []
    all_ready, drop = trio.Event(), trio.Event()
    dropped_at: list[float] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as metrics:
        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(stream_then_drop, server.base_url, tokens, deltas, streams,
                                   ready, all_ready, drop, dropped_at)
            await all_ready.wait()
            before = await read_gauge(metrics, name)
            drop.set()
        last_drop = max(dropped_at)
        deadline = last_drop + give_up_after
        while True:
            value = await read_gauge(metrics, name)
            now = time.perf_counter()
            if value == 0:
                return Round(server.name, before, now - last_drop)
            if now > deadline:
                raise TimeoutError(f"{server.name}: {name} still {value} after {give_up_after} s")
            await trio.sleep(poll)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--deltas", type=int, default=3, help="deltas read before the drop")
    parser.add_argument("--tokens", type=int, default=512, help="max_output_tokens")
    add_server_arguments(parser)
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between /metrics reads after the drop")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up waiting for the gauge after this many seconds")
    parser.add_argument("--json", type=Path, help="append each round's figures here")
    args = parser.parse_args()

    servers = make_servers(args, 8311, "/tmp/disconnect_real_store")
    theirs = servers[1]
    rounds: list[Round] = []
    for round_number in range(args.rounds):
        # Each round starts with the next server: each goes first as often as the others.
        shift = round_number % len(servers)
        for server in servers[shift:] + servers[:shift]:
            server.start()
            try:
                result = trio.run(measure, server, args.streams, args.tokens, args.deltas,
                                  args.timeout, args.poll)
            finally:
                server.stop()
            rounds.append(result)
            print(f"round {round_number} {server.name}: {result.running_before_drop:g} running "
                  f"before the drop, 0 after {result.seconds_to_zero:.3f} s", flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({"round": round_number, **vars(result)}) + "\n")

    def figures(server: Server) -> list[float]:
        return [r.seconds_to_zero for r in rounds if r.server == server.name]

    others = [s for s in servers if s is not theirs]
    print()
    print("| round | " + " | ".join(f"{s.name} (s)" for s in servers) + " | "
          + " | ".join(f"{s.name}/vLLM" for s in others) + " |")
    print("|---" * (len(servers) + len(others) + 1) + "|")
    columns = [figures(s) for s in servers]
    vllm = figures(theirs)
    for number, row in enumerate(zip(*columns, strict=True), start=1):
        ratios = [figures(s)[number - 1] / vllm[number - 1] for s in others]
        print(f"| {number} | " + " | ".join(f"{v:.3f}" for v in row) + " | "
              + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    medians = [statistics.median(c) for c in columns]
    print("| median | " + " | ".join(f"{m:.3f}" for m in medians) + " | "
          + " | ".join(f"{statistics.median(figures(s)) / statistics.median(vllm):.2f}"
                       for s in others) + " |")
    print(f"\ncommand: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
