"""What one API key's load costs another: latency of a neighbour, memory of stalled streams.

    .venv/bin/python benchmarks/tenants.py [--root DIR]
                                           [--parts neighbour chain memory biglog]
                                           [--server-flags "FLAGS"] [--tokens N]

Each part starts a server (the scripted engine, zero delay, two keys k1 and k2, its own
store) from the checkout at ``--root`` (default: this one), so the same script measures
an older checkout for a before/after (``--server-flags`` adds flags to every server),
and drives it over loopback:

* **neighbour**: with ``--max-queued-requests 20``, k1 starts 20 background responses
  that stall; meanwhile k2 creates and reads: how many of k2's creates are refused, and
  k2's create and GET latency (p50 / p99).
* **chain**: k1 builds a ``previous_response_id`` chain (``--chain`` turns of ~2 KB),
  then 8 clients of k1 call ``input_tokens`` on it back to back; k2's GET latency of a
  small response meanwhile, against the same GET on an idle server.
* **memory**: clients that read ``response.created`` and then nothing (a 4 KiB receive
  window) at the default ``--responses-stream-buffer-max-bytes`` (16 MiB), the engine
  given a context long enough to fill it: the server's RSS growth with one, then ten,
  such streams held, once their responses ended (a fresh server for each count).
* **biglog**: k1 makes one background response of ``--tokens`` tokens (``ignore_eos``);
  once it has ended: the server's RSS growth and the store's size; the latency of a
  GET, ``input_items?limit=1`` and ``/cancel`` of it; a resume (``GET ?stream=true``):
  time to its first byte and to its end, and ``/health``'s worst latency meanwhile (a
  prober every 20 ms); k2's GET of a small response while k1 reads the big one.

Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
MODEL = "scripted"
MiB = 1024 * 1024
# The server, with a scripted engine whose context holds millions of tokens (the default
# 8,192 could never fill a 16 MiB stream buffer).
SERVE = """
import sys, trio
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.server import serve
settings = Settings.from_args(sys.argv[1:])
engine = ScriptedEngine(model_name="scripted", max_model_len=1 << 24)
trio.run(lambda: serve(settings, engine=engine))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


EXTRA_FLAGS: list[str] = []


@contextmanager
def server(root: Path, flags: Sequence[str]) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    flags = [*flags, *EXTRA_FLAGS]
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, "--engine", "scripted", "--port", str(port),
             "--store-path", f"{tmp}/store.sqlite3", "--log-level", "warning",
             "--api-key", "k1", "--api-key", "k2", *flags],
            cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.05)
            yield base, psutil.Process(process.pid)
        finally:
            process.terminate()
            process.wait(30)


def client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=120,
                        headers={"authorization": f"Bearer {key}"})


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:.1f} / {p99 * 1000:.1f} ms"


def neighbour(root: Path) -> None:
    with server(root, ["--max-queued-requests", "20"]) as (base, _), \
            client(base, "k1") as k1, client(base, "k2") as k2:
        stored = k2.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        stalled = [k1.post("/v1/responses", json={"model": MODEL, "input": "[[stall]]",
                                                  "background": True}) for _ in range(20)]
        held = sum(r.status_code == 200 for r in stalled)
        creates, gets, refused = [], [], 0
        for _ in range(50):
            started = time.perf_counter()
            created = k2.post("/v1/responses", json={"model": MODEL, "input": "hi"})
            creates.append(time.perf_counter() - started)
            refused += created.status_code != 200
            if stored.status_code == 200:
                started = time.perf_counter()
                k2.get(f"/v1/responses/{stored.json()['id']}")
                gets.append(time.perf_counter() - started)
    print(f"neighbour: k1's stalled background responses admitted {held}/20; "
          f"k2's creates refused {refused}/50")
    print(f"  k2 create p50 / p99 {ms(creates)}; k2 GET p50 / p99 {ms(gets)}")


def chain(root: Path, turns: int) -> None:
    with server(root, []) as (base, _), client(base, "k1") as k1, client(base, "k2") as k2:
        previous = None
        for n in range(turns):
            body = {"model": MODEL, "input": f"turn {n} " + "lorem ipsum " * 170,
                    "max_output_tokens": 16}
            if previous:
                body["previous_response_id"] = previous
            previous = k1.post("/v1/responses", json=body).json()["id"]
        small = k2.post("/v1/responses", json={"model": MODEL, "input": "hi"}).json()["id"]

        def gets(count: int) -> list[float]:
            took = []
            for _ in range(count):
                started = time.perf_counter()
                k2.get(f"/v1/responses/{small}")
                took.append(time.perf_counter() - started)
            return took

        idle = gets(50)
        stop = threading.Event()
        counted = [0]

        def flood() -> None:
            with client(base, "k1") as own:
                while not stop.is_set():
                    answer = own.post("/v1/responses/input_tokens", json={
                        "model": MODEL, "input": "how long?", "previous_response_id": previous})
                    counted[0] += answer.status_code == 200
        threads = [threading.Thread(target=flood) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        loaded = gets(50)
        stop.set()
        for thread in threads:
            thread.join()
    print(f"chain: {turns} turns; k2 GET p50 / p99 idle {ms(idle)}, while 8 clients of k1 "
          f"count input_tokens on the chain {ms(loaded)} ({counted[0]} counts done)")


def stall(base: str, count: int) -> tuple[list[socket.socket], list[str]]:
    sockets, ids = [], []
    body = json.dumps({"model": MODEL, "input": " ".join(["word"] * 60), "stream": True,
                       "ignore_eos": True, "max_output_tokens": 1_000_000}).encode()
    port = int(base.rsplit(":", 1)[1])
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer k1\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        seen = b""
        while b'"id":"' not in seen:
            seen += sock.recv(4096)
        ids.append(seen.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode())
        sockets.append(sock)
    return sockets, ids


def memory(root: Path) -> None:
    figures = []
    for count in (1, 10):  # a fresh server each: freed memory is not always given back
        with server(root, []) as (base, process), client(base, "k1") as k1:
            k1.post("/v1/responses", json={"model": MODEL, "input": "warm up"})
            before = process.memory_info().rss
            sockets, ids = stall(base, count)
            statuses = []
            for response_id in ids:
                while (status := k1.get(f"/v1/responses/{response_id}").json()["status"]
                       ) == "in_progress":
                    time.sleep(0.2)
                statuses.append(status)
            held = process.memory_info().rss
            figures.append(f"{count} stalled ({', '.join(sorted(set(statuses)))}): "
                           f"+{(held - before) / MiB:.0f} MiB "
                           f"({before / MiB:.0f} → {held / MiB:.0f})")
            for sock in sockets:
                sock.close()
    print("memory (16 MiB stream buffer bound): " + "; ".join(figures))


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def biglog(root: Path, tokens: int) -> None:
    with server(root, []) as (base, process), client(base, "k1") as k1, \
            client(base, "k2") as k2:
        small = k2.post("/v1/responses", json={"model": MODEL, "input": "hi"}).json()["id"]
        before = process.memory_info().rss
        started = time.perf_counter()
        rid = k1.post("/v1/responses", json={
            "model": MODEL, "input": "go " * 20, "background": True, "ignore_eos": True,
            "max_output_tokens": tokens}).json()["id"]
        while k1.get(f"/v1/responses/{rid}").json()["status"] in ("queued", "in_progress"):
            time.sleep(0.5)
        generated = time.perf_counter() - started
        held = process.memory_info().rss
        store = 0
        for path in process.open_files():
            if path.path.endswith(".sqlite3"):
                store = Path(path.path).stat().st_size + sum(
                    p.stat().st_size for p in Path(path.path).parent.glob("*.sqlite3-wal"))
        get = [timed(lambda: k1.get(f"/v1/responses/{rid}")) for _ in range(5)]
        items = [timed(lambda: k1.get(f"/v1/responses/{rid}/input_items?limit=1"))
                 for _ in range(5)]
        cancel = [timed(lambda: k1.post(f"/v1/responses/{rid}/cancel")) for _ in range(5)]

        health: list[float] = []
        neighbour: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            with httpx.Client(base_url=base, timeout=120) as plain:
                while not stop.is_set():
                    health.append(timed(lambda: plain.get("/health")))
                    time.sleep(0.02)

        def other_key() -> None:
            with client(base, "k2") as own:
                while not stop.is_set():
                    neighbour.append(timed(lambda: own.get(f"/v1/responses/{small}")))
                    time.sleep(0.02)

        threads = [threading.Thread(target=probe), threading.Thread(target=other_key)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        first = total = 0.0
        size = 0
        started = time.perf_counter()
        with k1.stream("GET", f"/v1/responses/{rid}?stream=true") as response:
            for chunk in response.iter_raw():
                if not size:
                    first = time.perf_counter() - started
                size += len(chunk)
        total = time.perf_counter() - started
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    print(f"biglog: {tokens} tokens in {generated:.1f} s; RSS +{(held - before) / MiB:.0f} "
          f"MiB ({before / MiB:.0f} → {held / MiB:.0f}); store {store / MiB:.1f} MiB")
    print(f"  GET p50 / p99 {ms(get)}; input_items?limit=1 {ms(items)}; cancel {ms(cancel)}")
    print(f"  resume: first byte {first * 1000:.0f} ms, {size / MiB:.1f} MiB in "
          f"{total:.2f} s; /health meanwhile p50 {statistics.median(health or [0]) * 1000:.0f}"
          f" ms, max {max(health, default=0) * 1000:.0f} ms; k2 GET meanwhile p50 / p99 "
          f"{ms(neighbour)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve")
    parser.add_argument("--parts", nargs="+", default=["neighbour", "chain", "memory"],
                        choices=["neighbour", "chain", "memory", "biglog"])
    parser.add_argument("--tokens", type=int, default=200_000, help="biglog: tokens")
    parser.add_argument("--chain", type=int, default=200, help="chain: turns")
    parser.add_argument("--server-flags", default="", help="more flags for every server")
    args = parser.parse_args()
    EXTRA_FLAGS.extend(shlex.split(args.server_flags))
    print(f"serving {args.root} {args.server_flags}")
    if "neighbour" in args.parts:
        neighbour(args.root)
    if "chain" in args.parts:
        chain(args.root, args.chain)
    if "memory" in args.parts:
        memory(args.root)
    if "biglog" in args.parts:
        biglog(args.root, args.tokens)


if __name__ == "__main__":
    main()
