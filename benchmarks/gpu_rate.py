"""The streaming path at GPU rates: an engine that steps like a GPU, the real bridge.

    python benchmarks/gpu_rate.py [--streams 256] [--rates 10 20 40 80] [--seconds 8]

Each rate starts a fresh server subprocess (``gpu_sim_server.py``): trio_responses' app on
Hypercorn, with the real vLLM bridge (:class:`VLLMEngine`: the engine thread, one
``TrioToken.run_sync_soon`` batch per step, the merging of deltas a reader has not taken)
over a *paced core* in place of vLLM's ``LLMEngine``: every ``1 / rate`` seconds one step
gives every running request one token, as a GPU's batch does. Each token's text is the
``time.monotonic()`` at which its step was handed over, so a client on this machine (the
clock is system-wide) knows how late each token reached it.

``--streams`` clients (raw sockets on Trio, in this process) each keep one streamed
response running (``--tokens`` tokens, then the next), so the engine runs ``--streams``
requests; the nominal load is ``streams x rate`` tokens/s. Reported per rate:

* offered tokens/s (what the engine produced in the window: a stream between two
  responses, being created, has no tokens for a few steps) and delivered tokens/s
  (tokens the clients got; when the server lags, the bridge merges a stream's waiting
  deltas, so tokens still arrive, in fewer events);
* SSE events/s and tokens per event (1.0 while the server keeps up);
* added latency: from a token's step hand-over to its arrival at the client, p50 / p99
  (the part of the inter-token latency the front end adds);
* the server's CPU (psutil: user + system of its process, the engine thread's share of
  the bridge included) in cores, per event and per delivered token.

The server "keeps up" at a rate while it delivers what is offered one token per event
with p99 added latency under one step interval. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from benchmarks import server_overhead
from benchmarks.server_overhead import HOST, Server, free_port, profiled, quantile, started

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpu-sim"
STAMP = re.compile(rb'"delta":"((?: [0-9]+\.[0-9]+)+)"')
DELTA_EVENT = b"event: response.output_text.delta\n"
DONE = b"data: [DONE]"


# -- the client side -----------------------------------------------------------------------

@dataclass
class Tally:
    counting: bool = False
    tokens: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)


async def stream_forever(port: int, tokens: int, tally: Tally) -> None:
    body = json.dumps({"model": MODEL, "input": "go", "stream": True, "store": False,
                       "max_output_tokens": tokens}).encode()
    request = (b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
               b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    while True:
        async with await trio.open_tcp_stream(HOST, port) as stream:
            await stream.send_all(request)
            tail = b""
            while True:
                data = await stream.receive_some(1 << 16)
                now = time.monotonic()
                if not data:
                    raise ConnectionError("the server closed a stream early")
                data = tail + data
                # Only whole events are read; a partial one waits for the next bytes.
                cut = data.rfind(b"\n\n") + 2
                whole, tail = data[:cut], data[cut:]
                if tally.counting:
                    tally.events += whole.count(DELTA_EVENT)
                    for match in STAMP.finditer(whole):
                        stamps = match.group(1).split()
                        tally.tokens += len(stamps)
                        tally.latencies.extend(now - float(stamp) for stamp in stamps)
                if DONE in whole:
                    break


@dataclass
class Point:
    rate: float
    streams: int
    seconds: float
    tokens: int
    events: int
    server_cpu: float
    latencies: list[float]
    produced: int  # tokens the engine produced in the window

    @property
    def offered(self) -> float:
        return self.produced / self.seconds

    @property
    def delivered(self) -> float:
        return self.tokens / self.seconds

    def as_json(self) -> dict[str, float]:
        return {"rate": self.rate, "streams": self.streams, "offered": self.offered,
                "delivered": self.delivered, "nominal": self.streams * self.rate,
                "events_per_second": self.events / self.seconds,
                "tokens_per_event": self.tokens / max(self.events, 1),
                "added_p50_ms": quantile(self.latencies, 0.5) * 1e3,
                "added_p99_ms": quantile(self.latencies, 0.99) * 1e3,
                "server_cores": self.server_cpu / self.seconds,
                "cpu_us_per_event": self.server_cpu / max(self.events, 1) * 1e6,
                "cpu_us_per_token": self.server_cpu / max(self.tokens, 1) * 1e6}


async def measure(server: Server, streams: int, tokens: int, warmup: float,
                  seconds: float, rate: float, counter: Path) -> Point:
    tally = Tally()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(stream_forever, server.port, tokens, tally)
            await trio.sleep(0.002)  # not all at once: Hypercorn's listen backlog is 100
        await trio.sleep(warmup)
        tally.counting = True
        cpu, wall, produced = server.cpu_seconds(), time.monotonic(), produced_by(counter)
        await trio.sleep(seconds)
        tally.counting = False
        point = Point(rate, streams, time.monotonic() - wall, tally.tokens, tally.events,
                      server.cpu_seconds() - cpu, tally.latencies,
                      produced_by(counter) - produced)
        nursery.cancel_scope.cancel()
    return point


def produced_by(counter: Path) -> int:
    try:
        return int(counter.read_text() or 0)
    except FileNotFoundError:
        return 0


def run_rate(args: argparse.Namespace, rate: float, root: Path) -> Point:
    port = free_port()
    counter = Path(tempfile.mkdtemp(prefix="gpu-rate-")) / "produced"
    # By path, so that trio_responses comes from `root` (PYTHONPATH) and the paced core
    # from this checkout, whichever checkout is served.
    argv = [args.python, str(Path(__file__).resolve().parent / "gpu_sim_server.py"),
            str(port), str(rate), str(counter)]
    with started(argv, port, root) as server, profiled(server.ps.pid, f"gpu-rate-{rate:g}"):
        return trio.run(measure, server, args.streams, args.tokens, args.warmup,
                        args.seconds, rate, counter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40, 80],
                        help="engine steps per second to try")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per response")
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--compare", type=Path,
                        help="also serve this checkout at each rate (before/after)")
    parser.add_argument("--json", type=Path, help="append the points here (for the plots)")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--compare-label", help="the --compare checkout's name")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="profile each server with py-spy into DIR")
    args = parser.parse_args(argv)
    import psutil

    server_overhead.PROFILES = args.py_spy

    print(f"GPU-rate simulation: {args.streams} streams, {args.tokens}-token responses; "
          f"{psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.1f} at start")
    checkouts = [(args.label, ROOT)] + ([(args.compare_label or str(args.compare),
                                          args.compare)] if args.compare else [])
    print(f"  {'server':<24} {'steps/s':>7} {'offered':>8} {'delivered':>9} {'events/s':>8} "
          f"{'tok/ev':>6} {'added p50':>9} {'p99 ms':>7} {'cores':>5} {'µs/event':>8} "
          f"{'µs/token':>8}")
    for rate in args.rates:
        for label, root in checkouts:
            point = run_rate(args, rate, root)
            row = point.as_json()
            print(f"  {label[-24:]:<24} {rate:>7g} {row['offered']:>8,.0f} "
                  f"{row['delivered']:>9,.0f} {row['events_per_second']:>8,.0f} "
                  f"{row['tokens_per_event']:>6.2f} {row['added_p50_ms']:>9.1f} "
                  f"{row['added_p99_ms']:>7.1f} {row['server_cores']:>5.2f} "
                  f"{row['cpu_us_per_event']:>8.1f} {row['cpu_us_per_token']:>8.1f}", flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({"server": label, **row}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
