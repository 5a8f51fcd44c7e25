"""What the server itself costs, with the engine out of the way (scripted, zero delay).

    python benchmarks/server_overhead.py [--quick] [--baselines] [--parts ...] [flags]

Each part starts a fresh ``python -m trio_responses --engine scripted`` in a subprocess on
127.0.0.1 and drives it from this process with a raw-socket HTTP/1.1 client on Trio that
only counts bytes and markers (it costs the client less than half of what it costs the
server; both are printed). Server CPU and RSS come from psutil on the server's process.

* **throughput**: ``--streams`` concurrent clients, each streaming replies of
  ``--words`` + 2 tokens (the scripted engine echoes "You said: <input>", one token per
  word; at most ~4000, its context is 8192 tokens) back to back for ``--seconds``: SSE
  events/s and tokens/s on the wall clock, SSE events per server CPU-second ("per core":
  the server is one Trio thread), server CPU per streamed token. With ``--baselines`` the
  same client also measures two floors: a raw Trio socket server writing the same frames
  (one chunk per token), and a bare Quart-Trio app on Hypercorn streaming pre-built
  frames — what Trio, and Trio + the web framework, cost per chunk on this machine.
* **idle streams**: ``--idle`` streams held open and stalled (``[[stall]]``: the engine
  sends one token, then waits forever), a ping each per second: RSS growth per stream,
  and the server CPU the pings cost.
* **disconnect → engine abort**: ``--disconnects`` times, one stalled stream is opened
  and read to its first delta; the client sends its FIN (what a close sends) and reads
  on, so it sees exactly when the server has closed the connection, which is when the
  run is told to end. Then ``/metrics`` is polled back to back on a keep-alive
  connection until ``trio_responses_engine_aborts_total{cause="disconnect"}`` counts the
  abort: it happened after the last poll that missed it was sent and before the first
  that saw it was answered, and both bounds are printed (polling is coarse: a /metrics
  round trip is a few ms).
* **ping jitter**: ``--jitter-streams`` stalled streams for ``--jitter-seconds`` at
  ``--responses-ping-interval-seconds 0.2``: gaps between consecutive pings of a stream
  as the client sees them.

Not a test: nothing asserts. The default run takes about 2 minutes, ``--quick`` about
40 s; ``--baselines`` adds twice ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil
import trio
import trio.lowlevel

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MODEL = "scripted"
STALL = "[[stall]]"
EVENT = b"event: "
DELTA = b"event: response.output_text.delta"
# A heartbeat as the server sends it by default: an SSE comment.
PING = b": ping\n\n"
DONE = b"data: [DONE]"
PARTS = ("throughput", "idle", "disconnect", "jitter")
ABORTS = re.compile(rb'^trio_responses_engine_aborts_total\{cause="disconnect"\} (\S+)$', re.M)
LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


# -- servers -------------------------------------------------------------------------------

@dataclass
class Server:
    port: int
    ps: psutil.Process

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# Set by --py-spy: a folder where each server's py-spy profile (collapsed stacks) goes.
PROFILES: Path | None = None


@contextmanager
def profiled(pid: int, name: str) -> Iterator[None]:
    """py-spy samples the server while the block runs (if --py-spy asked for it)."""
    if PROFILES is None:
        yield
        return
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / f"{name}-{pid}.txt"
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                            "--pid", str(pid), "--format", "raw", "--rate", "200",
                            "--nonblocking", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached before the load starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


@contextmanager
def started(argv: list[str], port: int, root: Path = ROOT) -> Iterator[Server]:
    """Run ``argv`` (a server on ``port``, from the checkout ``root``) until the block
    ends; its output goes to a temporary file, shown if it dies before answering /health."""
    with tempfile.TemporaryDirectory(prefix="trio-responses-bench-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([a.replace("{tmp}", tmp) for a in argv], cwd=root,
                                       env={**os.environ, "PYTHONPATH": str(root)},
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while not _healthy(port):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the server did not start:\n"
                                           + log_path.read_text(errors="replace")[-2000:])
                    time.sleep(0.05)
                yield Server(port, psutil.Process(process.pid))
            finally:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# Set by --token-delay: the scripted engine's pause between tokens (0: as fast as it can,
# so frames pile up and go out several to a chunk; a pause makes it one chunk per token,
# as with a live engine, where each response gets one token per engine step).
TOKEN_DELAY = 0.0


def trio_responses(python: str, ping_interval: float, root: Path = ROOT, *,
                   census: Path | None = None, backlog: int | None = None
                   ) -> AbstractContextManager[Server]:
    """The server, from the checkout ``root``; with ``census``, under tracemalloc (see
    :func:`serve_census`), writing its snapshots into that folder; ``backlog``: its
    listen backlog, if that checkout has the flag (an older one would hand it to vLLM)."""
    port = free_port()
    command = ([python, str(Path(__file__).resolve()), "--serve-census", str(census)]
               if census is not None else [python, "-m", "trio_responses"])
    if backlog is not None and "backlog:" in (root / "trio_responses/config.py").read_text():
        command += ["--backlog", str(backlog)]
    # One client holds every stream: the per-key bounds (which would refuse the idle
    # part's thousand) are off, since what is measured is the server's own cost.
    return started([*command, "--engine", "scripted", "--host", HOST,
                    "--port", str(port), "--store-path", "{tmp}/store.sqlite3",
                    "--log-level", "warning", "--scripted-token-delay", str(TOKEN_DELAY),
                    "--max-responses-per-key", "0", "--max-streams-per-key", "0",
                    "--responses-ping-interval-seconds", str(ping_interval)], port, root)


def baseline(python: str, kind: str) -> AbstractContextManager[Server]:
    port = free_port()
    return started([python, str(Path(__file__).resolve()), "--serve-baseline", kind,
                    "--port", str(port)], port)


# The floors' one frame: a typical delta event of this server, byte for byte in size.
FLOOR_FRAME = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":12,"item_id":"msg_0123456789abcdef0123456789abcdef0123456789abcdef",'
    b'"output_index":0,"content_index":0,"delta":" w123","logprobs":[]}\n\n')


def _reply_tokens(body: str | bytes) -> int:
    return len(json.loads(body)["input"].split()) + 2


def serve_raw(port: int) -> None:
    """Floor 1: Trio sockets and hand-written HTTP/1.1, one chunk per frame."""
    chunk = b"%x\r\n%s\r\n" % (len(FLOOR_FRAME), FLOOR_FRAME)

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            received = await stream.receive_some(1 << 16)
            if not received:
                return
            data += received
        head, _, body = data.partition(b"\r\n\r\n")
        match = LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            body += await stream.receive_some(1 << 16)
        if head.startswith(b"GET /health"):
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            return
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                              b"transfer-encoding: chunked\r\n\r\n")
        for _ in range(_reply_tokens(body)):
            await stream.send_all(chunk)
            await trio.lowlevel.checkpoint()  # as the scripted engine yields per token
        await stream.send_all(b"%x\r\n%s\r\n0\r\n\r\n" % (len(DONE) + 2, DONE + b"\n\n"))

    trio.run(partial(trio.serve_tcp, handle, port, host=HOST))


def serve_quart(port: int) -> None:
    """Floor 2: Quart-Trio on Hypercorn (as trio_responses runs), pre-built frames."""
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from quart import Response, request
    from quart_trio import QuartTrio

    app = QuartTrio("floor")

    @app.post("/v1/responses")
    async def create() -> Response:
        tokens = _reply_tokens(await request.get_data())

        async def frames() -> AsyncIterator[bytes]:
            for _ in range(tokens):
                yield FLOOR_FRAME
                await trio.lowlevel.checkpoint()
            yield DONE + b"\n\n"

        response = Response(frames(), content_type="text/event-stream")
        response.timeout = None
        return response

    @app.get("/health")
    async def health() -> str:
        return "ok"

    config = Config()
    config.bind = [f"{HOST}:{port}"]
    trio.run(serve, app, config)


# How many frames of each allocation tracemalloc keeps in --census: enough to see, from
# a generic allocating line (a Trio task, a coroutine's frame), who asked for it.
CENSUS_FRAMES = int(os.environ.get("CENSUS_FRAMES", "8"))


def serve_census(out: Path, argv: list[str]) -> int:
    """``python -m trio_responses`` under tracemalloc. Each SIGUSR1 writes, into ``out``,
    snapshot ``<n>.snapshot`` and ``<n>.types.json`` (gc-tracked objects by type: count
    and shallow bytes), n = 0, 1, ... (the handler runs on the Trio thread, between two
    bytecodes, so the heap it sees is consistent)."""
    import gc
    import tracemalloc
    from collections import Counter

    tracemalloc.start(CENSUS_FRAMES)
    taken = [0]

    def dump(signum: int, frame: object) -> None:
        gc.collect()
        n = taken[0]
        counts: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for obj in gc.get_objects():
            kind = type(obj)
            name = f"{kind.__module__}.{kind.__qualname__}"
            counts[name] += 1
            sizes[name] += sys.getsizeof(obj)
        tracemalloc.take_snapshot().dump(str(out / f"{n}.snapshot"))
        (out / f"{n}.types.json").write_text(json.dumps({"counts": counts, "sizes": sizes}))
        taken[0] += 1

    signal.signal(signal.SIGUSR1, dump)
    from trio_responses.__main__ import main as serve_main
    return serve_main(argv)


def take_census(server: Server, out: Path, n: int) -> None:
    """Ask a --census server for snapshot ``n`` and wait until it is written."""
    server.ps.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (out / f"{n}.types.json").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server wrote no census")
        time.sleep(0.1)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename


def _generic(filename: str) -> bool:
    return ("/trio/_" in filename or "contextlib" in filename or filename.startswith("<")
            or "/functools" in filename or "/outcome/" in filename)


def report_census(out: Path, count: int, top: int = 25) -> None:
    """What ``count`` streams added between snapshots 0 and 1: by allocating line, by
    the line that called the allocation's first caller outside Trio/asyncio internals,
    by file, and gc-tracked objects by type."""
    import linecache
    import tracemalloc

    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen *>"), tracemalloc.Filter(False, "<unknown>")]
    before = tracemalloc.Snapshot.load(str(out / "0.snapshot")).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(out / "1.snapshot")).filter_traces(ignore)
    by_file = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in by_file)
    print(f"\ncensus (tracemalloc, {CENSUS_FRAMES} frames): {total / count / 1024:.1f} KiB "
          f"traced per stream, {sum(s.count_diff for s in by_file) / count:.0f} blocks")
    print("  by file (bytes per stream, blocks per stream):")
    for stat in by_file[:12]:
        print(f"  {stat.size_diff / count:>9.0f} {stat.count_diff / count:>6.1f}  "
              f"{_short(stat.traceback[0].filename)}")
    print("  by allocating line:")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        source = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        print(f"  {stat.size_diff / count:>9.0f} {stat.count_diff / count:>6.1f}  "
              f"{_short(frame.filename)}:{frame.lineno}  {source}")
    # Trio's tasks, scopes and events are allocated in Trio, and a coroutine's frame at
    # its call: the first caller outside Trio (and contextlib, attrs) says who wanted it.
    owners: dict[tuple[str, int], list[int]] = {}
    for stat in after.compare_to(before, "traceback"):
        frames = list(stat.traceback)
        owner = next((f for f in reversed(frames) if not _generic(f.filename)), frames[0])
        totals = owners.setdefault((owner.filename, owner.lineno), [0, 0])
        totals[0] += stat.size_diff
        totals[1] += stat.count_diff
    print("  by owner (the allocation's innermost caller outside Trio's internals):")
    for (filename, lineno), (size, blocks) in sorted(owners.items(), key=lambda kv: -kv[1][0]
                                                     )[:top]:
        source = linecache.getline(filename, lineno).strip()[:60]
        print(f"  {size / count:>9.0f} {blocks / count:>6.1f}  {_short(filename)}:{lineno}  "
              f"{source}")
    types = [json.loads((out / f"{n}.types.json").read_text()) for n in (0, 1)]
    grown = sorted(((types[1]["sizes"].get(name, 0) - types[0]["sizes"].get(name, 0),
                     types[1]["counts"][name] - types[0]["counts"].get(name, 0), name)
                    for name in types[1]["counts"]), reverse=True)
    print("  gc-tracked objects by type (shallow bytes per stream, objects per stream):")
    for size, number, name in grown[:top]:
        print(f"  {size / count:>9.0f} {number / count:>6.1f}  {name}")


# -- a raw client: one request per connection, markers counted, nothing parsed ---------

class Markers:
    """Counts of byte markers across reads (a marker may straddle two reads)."""

    def __init__(self, *markers: bytes) -> None:
        self.counts = dict.fromkeys(markers, 0)
        self._tails = dict.fromkeys(markers, b"")

    def feed(self, data: bytes) -> dict[bytes, int]:
        found: dict[bytes, int] = {}
        for marker, tail in self._tails.items():
            joined = tail + data
            found[marker] = joined.count(marker)
            self.counts[marker] += found[marker]
            self._tails[marker] = joined[-(len(marker) - 1):]
        return found


class SSEClient:
    """One streamed create on its own connection."""

    def __init__(self, stream: trio.SocketStream, *markers: bytes) -> None:
        self.stream = stream
        self.markers = Markers(*markers)
        self._status_checked = False

    @classmethod
    async def open(cls, port: int, text: str, *markers: bytes) -> SSEClient:
        body = json.dumps({"model": MODEL, "input": text, "stream": True, "store": False}
                          ).encode()
        stream = await trio.open_tcp_stream(HOST, port)
        await stream.send_all(
            b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return cls(stream, *markers)

    async def receive(self) -> tuple[bytes, dict[bytes, int]]:
        """The next bytes (empty at the end) and the markers in them."""
        data = await self.stream.receive_some(1 << 16)
        if not self._status_checked and data:
            self._status_checked = True
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the server refused the stream: {data[:300]!r}")
        return data, self.markers.feed(data)

    async def read_until(self, marker: bytes) -> None:
        while not self.markers.counts[marker]:
            data, _ = await self.receive()
            if not data:
                raise ConnectionError("the server closed the stream early")

    async def aclose(self) -> None:
        await self.stream.aclose()


# -- the parts -----------------------------------------------------------------------------

@dataclass
class Throughput:
    wall: float
    server_cpu: float
    client_cpu: float
    events: int
    tokens: int
    responses: int


async def throughput(server: Server, streams: int, words: int, seconds: float) -> Throughput:
    text = " ".join(f"w{i}" for i in range(words))
    totals = dict.fromkeys((EVENT, DELTA, DONE), 0)

    async def one(count: bool) -> None:
        client = await SSEClient.open(server.port, text, *totals)
        try:
            await client.read_until(DONE)
        finally:
            await client.aclose()
        if count:
            for marker, found in client.markers.counts.items():
                totals[marker] += found

    async def loop(stop: float) -> None:
        while trio.current_time() < stop:
            await one(count=True)

    async with trio.open_nursery() as nursery:  # one unmeasured response per client first
        for _ in range(streams):
            nursery.start_soon(one, False)
    cpu, client_cpu, wall = server.cpu_seconds(), time.process_time(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(loop, trio.current_time() + seconds)
    wall = time.perf_counter() - wall
    return Throughput(wall=wall, server_cpu=server.cpu_seconds() - cpu,
                      client_cpu=time.process_time() - client_cpu, events=totals[EVENT],
                      tokens=totals[DELTA], responses=totals[DONE])


@dataclass
class Idle:
    count: int
    rss_before: int
    rss_after: int
    cpu_per_second: float  # server CPU-seconds per second while the streams only ping
    pings_per_second: float


async def idle_streams(server: Server, count: int, hold: float, census: Path | None = None
                       ) -> Idle:
    warm = await SSEClient.open(server.port, "warm up", DONE)
    await warm.read_until(DONE)
    await warm.aclose()
    await trio.sleep(0.5)
    if census is not None:
        await trio.to_thread.run_sync(take_census, server, census, 0)
    rss_before = server.rss()
    pings = [0]
    clients: list[SSEClient] = []
    # Connections set up at once: Hypercorn's listen backlog is 100.
    setting_up = trio.CapacityLimiter(50)

    async def hold_one(task_status: trio.TaskStatus[None]) -> None:
        async with setting_up:
            client = await SSEClient.open(server.port, f"idle {STALL}", DELTA, PING)
            clients.append(client)
            await client.read_until(DELTA)
        task_status.started()
        while True:
            data, found = await client.receive()
            if not data:
                raise ConnectionError("the server closed an idle stream")
            pings[0] += found[PING]

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            await nursery.start(hold_one)
        await trio.sleep(1.5)
        rss_after = server.rss()
        if census is not None:
            await trio.to_thread.run_sync(take_census, server, census, 1)
        before = pings[0], server.cpu_seconds(), time.perf_counter()
        await trio.sleep(hold)
        held = time.perf_counter() - before[2]
        idle = Idle(count, rss_before, rss_after, (server.cpu_seconds() - before[1]) / held,
                    (pings[0] - before[0]) / held)
        nursery.cancel_scope.cancel()
    for client in clients:
        await client.aclose()
    return idle


class MetricsPoller:
    """``GET /metrics`` on one keep-alive connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def aborts(self) -> float:
        await self._stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await self._stream.receive_some(1 << 16)
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        match = LENGTH.search(head)
        if match is None:
            raise RuntimeError(f"/metrics without a content-length: {head[:300]!r}")
        length = int(match.group(1))
        while len(rest) < length:
            rest += await self._stream.receive_some(1 << 16)
        body, self._buffer = rest[:length], rest[length:]
        counted = ABORTS.search(body)
        return float(counted.group(1)) if counted else 0.0


@dataclass
class Disconnects:
    # Seconds after each disconnect: the server closed its side of the connection; the
    # abort was counted after `lower` and before `upper`.
    closed: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    poll_round_trips: list[float] = field(default_factory=list)
    storm_cut: int = 0  # storm streams refused, or closed before their end, while measured
    storm_rate: float = 0.0  # deltas/s the storm streams received while measured


async def disconnects(server: Server, count: int, storm: int = 0, words: int = 200,
                      ramp: int = 50) -> Disconnects:
    """The client sends its FIN (as a close would) but keeps reading, so the moment the
    server closes the connection is seen exactly; /metrics then confirms the abort.
    With ``storm``, that many other streams keep streaming meanwhile: opened ``ramp`` at
    a time (a connection counts as opening until its first delta arrives, so neither
    the listen backlog nor the time an overloaded server takes to read a new request,
    which its keep-alive timer bounds, is overrun), and measured once all are streaming;
    each opens its next response the same way when one ends."""
    if not storm:
        return await _disconnects(server, count)
    text = " ".join(f"w{i}" for i in range(words))
    opening = trio.CapacityLimiter(ramp)
    streaming = [0, 0]  # storm streams that got their first delta; deltas received
    all_streaming = trio.Event()
    cut = [0]

    async def stream_forever() -> None:
        first = True
        while True:
            try:
                async with opening:
                    client = await SSEClient.open(server.port, text, DELTA, DONE)
                    try:
                        await client.read_until(DELTA)
                    except BaseException:
                        await client.aclose()
                        raise
            except (OSError, ConnectionError, trio.BrokenResourceError):
                # Refused (a full listen backlog) or closed before the response began
                # (the keep-alive timer of a server too slow to read the request).
                cut[0] += 1
                await trio.sleep(0.1)
                continue
            if first:
                first = False
                streaming[0] += 1
                if streaming[0] == storm:
                    all_streaming.set()
            try:
                while not client.markers.counts[DONE]:
                    data, found = await client.receive()
                    if not data:
                        raise ConnectionError("the server closed the stream early")
                    streaming[1] += found[DELTA]
            except (ConnectionError, trio.BrokenResourceError):
                cut[0] += 1
            finally:
                await client.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(storm):
            nursery.start_soon(stream_forever)
        await all_streaming.wait()
        cut[0], deltas, began = 0, streaming[1], time.perf_counter()
        result = await _disconnects(server, count)  # only what happens meanwhile counts
        result.storm_rate = (streaming[1] - deltas) / (time.perf_counter() - began)
        nursery.cancel_scope.cancel()
    result.storm_cut = cut[0]
    return result


async def _disconnects(server: Server, count: int) -> Disconnects:
    result = Disconnects()
    async with await trio.open_tcp_stream(HOST, server.port) as connection:
        poller = MetricsPoller(connection)
        seen = await poller.aborts()
        for _ in range(count):
            client = await SSEClient.open(server.port, f"disconnect {STALL}", DELTA)
            await client.read_until(DELTA)
            disconnected = time.perf_counter()
            await client.stream.send_eof()
            while (await client.receive())[0]:
                pass
            result.closed.append(time.perf_counter() - disconnected)
            await client.aclose()
            last_miss = disconnected  # the last poll sent that did not count it (none yet)
            while True:
                sent = time.perf_counter()
                value = await poller.aborts()
                answered = time.perf_counter()
                result.poll_round_trips.append(answered - sent)
                if value > seen:
                    seen = value
                    result.lower.append(last_miss - disconnected)
                    result.upper.append(answered - disconnected)
                    break
                last_miss = sent
                if answered - disconnected > 10:
                    raise RuntimeError("no engine abort within 10 s of a disconnect")
    return result


@dataclass
class Jitter:
    gaps: list[float]  # seconds between consecutive pings of a stream, as received
    server_cpu: float  # server CPU-seconds while measured
    seconds: float  # how long it was measured


async def ping_gaps(server: Server, streams: int, seconds: float, ramp: int = 50) -> Jitter:
    """Gaps between pings once every stream is open: opened ``ramp`` at a time (until
    each has its first delta), then measured for ``seconds``; a gap counts if it ends
    while measured (its first ping may come before)."""
    gaps: list[float] = []
    opening = trio.CapacityLimiter(ramp)
    measuring = [False]

    async def watch(task_status: trio.TaskStatus[None]) -> None:
        async with opening:
            client = await SSEClient.open(server.port, f"jitter {STALL}", DELTA, PING)
            await client.read_until(DELTA)
        task_status.started()
        try:
            last: float | None = None
            while True:
                data, found = await client.receive()
                now = time.perf_counter()
                if not data:
                    raise ConnectionError("the server closed a stalled stream")
                if found[PING]:
                    if last is not None and measuring[0]:
                        gaps.append(now - last)
                    last = now
        finally:
            await client.aclose()

    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as opener:
            for _ in range(streams):
                opener.start_soon(nursery.start, watch)
        measuring[0] = True
        cpu, began = server.cpu_seconds(), time.perf_counter()
        await trio.sleep(seconds)
        measuring[0] = False
        result = Jitter(gaps, server.cpu_seconds() - cpu, time.perf_counter() - began)
        nursery.cancel_scope.cancel()
    return result


# -- the report ----------------------------------------------------------------------------

def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<42} {value:>16}  {note}".rstrip())


def report_throughput(args: argparse.Namespace) -> None:
    servers: list[tuple[str, Callable[[], AbstractContextManager[Server]]]] = [
        (args.label, partial(trio_responses, args.python, 0))]
    if args.compare:
        servers.append((args.compare_label or f"trio_responses at {args.compare}",
                        partial(trio_responses, args.python, 0, args.compare)))
    servers *= args.rounds
    if args.baselines:
        servers += [("floor: bare Quart-Trio + Hypercorn", partial(baseline, args.python, "quart")),
                    ("floor: raw Trio sockets", partial(baseline, args.python, "raw"))]
    print(f"\nthroughput: {args.streams} streams, {args.words + 2}-token replies, "
          f"{args.seconds:g} s each")
    for name, start in servers:
        with start() as server, profiled(server.ps.pid, "throughput"):
            tp = trio.run(throughput, server, args.streams, args.words, args.seconds)
        print(f" {name}: {tp.responses} responses in {tp.wall:.1f} s")
        row("SSE events/s (wall)", f"{tp.events / tp.wall:,.0f}")
        row("tokens/s (wall)", f"{tp.tokens / tp.wall:,.0f}")
        row("server CPU busy", f"{tp.server_cpu / tp.wall:.2f}", "cores")
        row("SSE events per server CPU-second", f"{tp.events / tp.server_cpu:,.0f}",
            "per core")
        row("server CPU per streamed token", f"{tp.server_cpu / tp.tokens * 1e6:.1f}", "µs")
        row("client CPU per streamed token", f"{tp.client_cpu / tp.tokens * 1e6:.1f}",
            "µs (the load generator)")
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps({
                    "server": name, "token_delay": TOKEN_DELAY, "streams": args.streams,
                    "events_per_cpu_second": tp.events / tp.server_cpu,
                    "cpu_us_per_token": tp.server_cpu / tp.tokens * 1e6}) + "\n")


def checkouts(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The checkouts to serve, in order: this one, and --compare's, alternating for
    --rounds."""
    servers = [(args.label, ROOT)]
    if args.compare:
        servers.append((args.compare_label or f"trio_responses at {args.compare}",
                        args.compare))
    return servers * args.rounds


class Medians:
    """Each server's figures over its rounds; their medians side by side at the end,
    with the ratio of this checkout's to --compare's."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, list[float]]] = {}

    def add(self, server: str, figure: str, value: float) -> None:
        self.figures.setdefault(figure, {}).setdefault(server, []).append(value)

    def report(self) -> None:
        if not any(len(by_server) > 1 or len(next(iter(by_server.values()))) > 1
                   for by_server in self.figures.values()):
            return
        names = list(next(iter(self.figures.values())))
        print(f" medians over the rounds ({' / '.join(names)}"
              + (", ratio" if len(names) == 2 else "") + "):")
        for figure, by_server in self.figures.items():
            medians = [quantile(by_server.get(name, []), 0.5) for name in names]
            ratio = (f"  ratio {medians[0] / medians[1]:.2f}"
                     if len(medians) == 2 and medians[1] else "")
            row(figure, " / ".join(f"{m:.3g}" for m in medians), ratio)


def report_idle(args: argparse.Namespace) -> None:
    print(f"\nidle streams: {args.idle} stalled streams, a ping each per second")
    medians = Medians()
    for name, root in checkouts(args):
        with tempfile.TemporaryDirectory(prefix="trio-responses-census-") as tmp:
            census = Path(tmp) if args.census else None
            with trio_responses(args.python, 1, root, census=census) as server:
                idle = trio.run(idle_streams, server, args.idle, args.idle_seconds, census)
            if census is not None:
                report_census(census, args.idle)
        per_ping = idle.cpu_per_second / max(idle.pings_per_second, 1)
        per_stream = (idle.rss_after - idle.rss_before) / idle.count / 1024
        print(f" {name} (load average {psutil.getloadavg()[0]:.1f}):")
        row("server RSS before / with the streams",
            f"{idle.rss_before / 2**20:.1f} / {idle.rss_after / 2**20:.1f}", "MiB")
        row("RSS per idle stream", f"{per_stream:.1f}", "KiB"
            + (" (tracemalloc's own included)" if args.census else ""))
        row("pings received per second", f"{idle.pings_per_second:,.0f}")
        row("server CPU for them", f"{idle.cpu_per_second * 100:.1f}",
            f"% of a core, {per_ping * 1e6:.0f} µs a ping")
        medians.add(name, "RSS per idle stream, KiB", per_stream)
        medians.add(name, "server CPU per ping, µs", per_ping * 1e6)
    medians.report()


def report_disconnects(args: argparse.Namespace) -> None:
    print(f"\ndisconnect → engine abort: {args.disconnects} disconnects, one at a time"
          + (f", while {args.storm} other streams stream ({args.words + 2}-token replies, "
             f"--token-delay {TOKEN_DELAY:g})" if args.storm else ""))
    medians = Medians()
    for name, root in checkouts(args):
        with trio_responses(args.python, 0, root, backlog=args.backlog) as server:
            result = trio.run(disconnects, server, args.disconnects, args.storm, args.words,
                              args.ramp)
        print(f" {name} (load average {psutil.getloadavg()[0]:.1f}):")
        row("server closed the connection p50 / p99",
            f"{quantile(result.closed, 0.5) * 1e3:.2f} / "
            f"{quantile(result.closed, 0.99) * 1e3:.2f}", "ms (the run is ended at that point)")
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            row(f"abort counted in /metrics, {label}",
                f"{quantile(result.lower, q) * 1e3:.1f} - {quantile(result.upper, q) * 1e3:.1f}",
                "ms (between)")
        if args.storm:
            row("storm streams refused or cut before their end", f"{result.storm_cut}")
            row("storm: deltas received per second while measured",
                f"{result.storm_rate:,.0f}",
                f"(offered: {args.storm / TOKEN_DELAY if TOKEN_DELAY else float('inf'):,.0f})")
        row("/metrics round trip p50 (its resolution)",
            f"{quantile(result.poll_round_trips, 0.5) * 1e3:.1f}", "ms")
        medians.add(name, "closed p99, ms", quantile(result.closed, 0.99) * 1e3)
        medians.add(name, "abort counted p99 (upper), ms", quantile(result.upper, 0.99) * 1e3)
    medians.report()


def report_jitter(args: argparse.Namespace) -> None:
    interval = args.jitter_interval
    print(f"\nping jitter: {args.jitter_streams} stalled streams, {interval:g} s interval, "
          f"{args.jitter_seconds:g} s measured once all are open")
    medians = Medians()
    for name, root in checkouts(args):
        with trio_responses(args.python, interval, root, backlog=args.backlog) as server:
            jitter = trio.run(ping_gaps, server, args.jitter_streams, args.jitter_seconds,
                              args.ramp)
        gaps = jitter.gaps
        deviations = [abs(gap - interval) for gap in gaps]
        print(f" {name} (load average {psutil.getloadavg()[0]:.1f}): {len(gaps)} gaps, "
              f"server at {jitter.server_cpu / jitter.seconds:.2f} cores")
        row("gap p1 / p50 / p99", " / ".join(f"{quantile(gaps, q) * 1e3:.1f}"
                                            for q in (0.01, 0.5, 0.99)), "ms")
        row(f"|gap - {interval * 1e3:g} ms| p50 / p99 / max",
            f"{quantile(deviations, 0.5) * 1e3:.1f} / {quantile(deviations, 0.99) * 1e3:.1f} / "
            f"{max(deviations, default=float('nan')) * 1e3:.1f}", "ms")
        row("server CPU per ping", f"{jitter.server_cpu / max(len(gaps), 1) * 1e6:.0f}", "µs")
        medians.add(name, "|gap - interval| p99, ms", quantile(deviations, 0.99) * 1e3)
        medians.add(name, "server CPU per ping, µs", jitter.server_cpu / max(len(gaps), 1) * 1e6)
    medians.report()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--serve-census"]:
        return serve_census(Path(argv[1]), argv[2:])
    parser = argparse.ArgumentParser(
        description="Server overhead of trio_responses with the scripted engine.")
    parser.add_argument("--python", default=sys.executable, help="the servers' interpreter")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--streams", type=int, default=8, help="throughput: concurrent streams")
    parser.add_argument("--words", type=int, default=2000,
                        help="throughput: input words (reply tokens = words + 2, <= ~4000)")
    parser.add_argument("--seconds", type=float, default=15, help="throughput: duration")
    parser.add_argument("--baselines", action="store_true",
                        help="throughput: also measure the raw Trio and bare Quart floors")
    parser.add_argument("--idle", type=int, default=1000, help="idle: streams held open")
    parser.add_argument("--idle-seconds", type=float, default=5,
                        help="idle: how long the held streams ping")
    parser.add_argument("--disconnects", type=int, default=300, help="disconnects measured")
    parser.add_argument("--storm", type=int, default=0,
                        help="disconnect: other streams streaming meanwhile (with --words)")
    parser.add_argument("--ramp", type=int, default=50,
                        help="disconnect, jitter: streams opening at once (until their "
                        "first delta)")
    parser.add_argument("--backlog", type=int,
                        help="the server's --backlog (listen backlog), where it has the flag")
    parser.add_argument("--census", action="store_true",
                        help="idle: the server under tracemalloc; what the streams hold, by "
                        "allocating line and by type (its RSS figures then include "
                        "tracemalloc's own)")
    parser.add_argument("--jitter-streams", type=int, default=50)
    parser.add_argument("--jitter-seconds", type=float, default=10)
    parser.add_argument("--jitter-interval", type=float, default=0.2,
                        help="jitter: the server's --responses-ping-interval-seconds")
    parser.add_argument("--quick", action="store_true", help="every part small")
    parser.add_argument("--compare", type=Path,
                        help="also serve this checkout (e.g. main before a change)")
    parser.add_argument("--label", default="trio_responses", help="this checkout's name")
    parser.add_argument("--compare-label", help="the --compare checkout's name")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate the servers this many times")
    parser.add_argument("--token-delay", type=float, default=0.0,
                        help="throughput: seconds between the scripted engine's tokens")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="profile each throughput server with py-spy into DIR")
    parser.add_argument("--json", type=Path,
                        help="throughput: append each server's figures here (benchmarks/plots.py)")
    parser.add_argument("--serve-baseline", choices=("raw", "quart"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        (serve_raw if args.serve_baseline == "raw" else serve_quart)(args.port)
        return 0
    global PROFILES, TOKEN_DELAY
    PROFILES, TOKEN_DELAY = args.py_spy, args.token_delay
    if args.quick:
        args.seconds, args.idle, args.idle_seconds = 5, 200, 3
        args.disconnects, args.jitter_streams, args.jitter_seconds = 60, 20, 4

    print(f"trio_responses server overhead, scripted engine at zero delay; "
          f"{psutil.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average {psutil.getloadavg()[0]:.1f} at start")
    print("  " + " ".join(["python", "benchmarks/server_overhead.py",
                           *argv]))
    reports = {"throughput": report_throughput, "idle": report_idle,
               "disconnect": report_disconnects, "jitter": report_jitter}
    for part in args.parts:
        reports[part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
