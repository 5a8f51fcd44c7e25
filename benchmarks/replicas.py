"""Replicas on a shared PostgreSQL store: what the store costs, how live work crosses
replicas, and a crash loop.

    .venv/bin/python benchmarks/replicas.py [--parts store live crash] [--streams 300]
                                            [--crash-seconds 150]

Everything runs here: a throwaway PostgreSQL cluster (tests/support/postgres.py), the
servers as processes on 127.0.0.1 (the scripted engine), and the clients on Trio with
httpx, all on the same (2-CPU) machine, so the figures include the clients' and the
database's share of it.

* **store**: one server at a time — SQLite, PostgreSQL, and ``store: false`` as the
  floor — and 8 clients creating short responses back to back for ``--seconds``:
  stored responses per second, and the p50/p99 latency each store adds over the floor.
* **live**: three replicas; ``--streams`` background responses created with
  ``stream: true`` round-robin, each followed at once from the next replica
  (``GET ?stream=true``): the follower's lag behind the creator's own stream, per event
  (p50/p99), with the per-key quotas off (one key makes all the load); then
  ``--streams`` stalled background responses, each cancelled from another
  replica: the cancel call's latency (it returns once the running replica has aborted the
  engine request and saved ``cancelled``), p50/p99.
* **crash**: three replicas (lease 2 s); clients create stored responses round-robin and
  retry on another replica when one fails; every few seconds one random replica gets
  ``kill -9`` and is started again. Then: acknowledged responses lost (must be 0), rows
  left ``queued``/``in_progress`` after the lease (must be 0), and PostgreSQL's own
  checks (``amcheck`` on every index, foreign keys).

Not a test: nothing asserts; it prints the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.procs import ServerProcess  # noqa: E402
from tests.support.postgres import Cluster, throwaway_cluster  # noqa: E402

MODEL = "scripted"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def start(tmp: Path, name: str, *, url: str | None = None, delay: float = 0.0,
          extra: tuple[str, ...] = ()) -> ServerProcess:
    folder = tmp / name
    folder.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(folder, token_delay=delay, store_url=url,
                           extra=("--responses-ping-interval-seconds", "0", *extra))
    server.launch()
    return server


# -- store -----------------------------------------------------------------------------

async def create_loop(base: str, store: bool, seconds: float, clients: int
                      ) -> list[float]:
    latencies: list[float] = []
    deadline = trio.current_time() + seconds

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while trio.current_time() < deadline:
                began = time.perf_counter()
                reply = await http.post("/v1/responses", json={
                    "model": MODEL, "input": "a short question", "store": store,
                    "max_output_tokens": 8})
                reply.raise_for_status()
                latencies.append(time.perf_counter() - began)

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    return latencies


def part_store(cluster: Cluster, tmp: Path, seconds: float) -> None:
    print(f"\n## store: 8 clients, {seconds:.0f} s each, short responses (scripted engine)")
    floor: list[float] = []
    for name, url, store in (("floor (store: false)", None, False),
                             ("SQLite", None, True),
                             ("PostgreSQL", cluster.new_database(), True)):
        server = start(tmp, name.split()[0], url=url)
        try:
            server.wait_ready(60)
            trio.run(create_loop, server.base_url, store, 2.0, 8)  # warm-up
            latencies = trio.run(create_loop, server.base_url, store, seconds, 8)
        finally:
            server.stop()
        if not store:
            floor = latencies
        rate = len(latencies) / seconds
        added = "" if not store else (
            f"; added over the floor p50 {ms(pct(latencies, 50) - pct(floor, 50))}, "
            f"p99 {ms(pct(latencies, 99) - pct(floor, 99))}")
        print(f"- {name}: {rate:.0f} responses/s; latency p50 {ms(pct(latencies, 50))}, "
              f"p99 {ms(pct(latencies, 99))}{added}")


# -- live ------------------------------------------------------------------------------

async def sse_times(http: httpx.AsyncClient, method: str, url: str,
                    body: dict[str, Any] | None, times: dict[int, float],
                    on_id: Callable[[str], None] | None = None) -> None:
    """Read an SSE stream: the arrival time of each sequence number; ``on_id`` gets the
    response id from the first event."""
    async with http.stream(method, url, json=body) as reply:
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            times[event["sequence_number"]] = time.perf_counter()
            if on_id is not None and "response" in event:
                on_id(event["response"]["id"])
                on_id = None


async def live(replicas: list[ServerProcess], streams: int) -> None:
    lags: list[float] = []
    followed = 0
    limits = httpx.Limits(max_connections=streams * 2, max_keepalive_connections=streams * 2)
    words = " ".join(f"w{i}" for i in range(40))
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:

        async def one(n: int) -> None:
            nonlocal followed
            creator, follower = replicas[n % 3], replicas[(n + 1) % 3]
            own: dict[int, float] = {}
            seen: dict[int, float] = {}
            got_id = trio.Event()
            box: list[str] = []

            def on_id(response_id: str) -> None:
                box.append(response_id)
                got_id.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sse_times, http, "POST", creator.base_url + "/v1/responses",
                                   {"model": MODEL, "input": words, "stream": True,
                                    "background": True}, own, on_id)
                await got_id.wait()
                await sse_times(http, "GET", follower.base_url
                                + f"/v1/responses/{box[0]}?stream=true", None, seen)
            followed += 1
            lags.extend(max(0.0, seen[s] - own[s]) for s in own if s in seen)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(streams):
                nursery.start_soon(one, n)
        took = time.perf_counter() - started
    print(f"- follower lag behind the running replica ({followed} streams followed, "
          f"{len(lags)} events, {took:.1f} s): p50 {ms(pct(lags, 50))}, "
          f"p99 {ms(pct(lags, 99))}")

    cancels: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:

        async def cancel_one(n: int) -> None:
            creator, other = replicas[n % 3], replicas[(n + 1) % 3]
            created = (await http.post(creator.base_url + "/v1/responses", json={
                "model": MODEL, "input": "wait [[stall]]", "background": True})).json()
            began = time.perf_counter()
            try:
                # Its own connection: a pooled one may have been closed by the server's
                # keep-alive timeout while the loaded machine kept this task waiting.
                reply = await http.post(
                    other.base_url + f"/v1/responses/{created['id']}/cancel",
                    headers={"connection": "close"})
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            if reply.json().get("status") == "cancelled":
                cancels.append(time.perf_counter() - began)
            else:
                errors.append(f"{reply.status_code} {reply.text[:200]}")

        async with trio.open_nursery() as nursery:
            for n in range(streams):
                nursery.start_soon(cancel_one, n)
    print(f"- cancel from another replica → aborted and saved ({len(cancels)}/{streams}): "
          f"p50 {ms(pct(cancels, 50))}, p99 {ms(pct(cancels, 99))}")
    for error in sorted(set(errors)):
        print(f"  - {errors.count(error)} times: {error}")
    if errors:
        for replica in replicas:
            print(f"  --- {replica.base_url} log tail:\n" + replica.log()[-1500:])


def part_live(cluster: Cluster, tmp: Path, streams: int) -> None:
    print(f"\n## live: 3 replicas, {streams} concurrent background streams, 40 tokens "
          "at 20 ms each")
    url = cluster.new_database()
    # One key makes the whole load here: its per-key quotas (128 streams, 4 reads at
    # once per replica) would refuse or queue most of it.
    off = ("--max-streams-per-key", "0", "--max-responses-per-key", "0",
           "--max-concurrent-reads-per-key", "0")
    replicas = [start(tmp, f"live{n}", url=url, delay=0.02, extra=off) for n in range(3)]
    try:
        for replica in replicas:
            replica.wait_ready(60)
        trio.run(live, replicas, streams)
    finally:
        for replica in replicas:
            replica.stop()


# -- crash -----------------------------------------------------------------------------

async def crash_loop(replicas: list[ServerProcess], seconds: float, kill_every: float,
                     acked: dict[str, str]) -> tuple[int, int]:
    """Clients create stored responses while a killer kill -9s replicas; returns the
    number of kills and of failed attempts (retried elsewhere)."""
    kills = 0
    failures = 0
    deadline = trio.current_time() + seconds

    async def client(n: int) -> None:
        nonlocal failures
        async with httpx.AsyncClient(timeout=10) as http:
            turn = 0
            while trio.current_time() < deadline:
                turn += 1
                replica = replicas[(n + turn) % len(replicas)]
                try:
                    reply = await http.post(replica.base_url + "/v1/responses", json={
                        "model": MODEL, "input": f"client {n} turn {turn}"})
                    body = reply.json()
                    if reply.status_code == 200 and body["status"] == "completed":
                        acked[body["id"]] = body["output"][0]["content"][0]["text"]
                    else:
                        failures += 1
                except (httpx.HTTPError, ValueError):
                    failures += 1
                    await trio.sleep(0.05)

    async def killer() -> None:
        nonlocal kills
        rng = random.Random(16)
        while trio.current_time() + kill_every < deadline:
            await trio.sleep(kill_every)
            victim = rng.choice(replicas)
            victim.kill9()
            kills += 1
            victim.launch()
            await trio.to_thread.run_sync(victim.wait_ready, 60)

    async with trio.open_nursery() as nursery:
        for n in range(6):
            nursery.start_soon(client, n)
        nursery.start_soon(killer)
    return kills, failures


def part_crash(cluster: Cluster, tmp: Path, seconds: float) -> None:
    print(f"\n## crash loop: 3 replicas (lease 2 s), 6 clients, {seconds:.0f} s, "
          "kill -9 of a random replica every 8 s")
    import psycopg

    url = cluster.new_database()
    replicas = [start(tmp, f"crash{n}", url=url, delay=0.01,
                      extra=("--store-lease-seconds", "2")) for n in range(3)]
    acked: dict[str, str] = {}
    try:
        for replica in replicas:
            replica.wait_ready(60)
        kills, failures = trio.run(crash_loop, replicas, seconds, 8.0, acked)
        time.sleep(2 * 2 + 1)  # past the lease, and a sweep
        lost = 0
        with httpx.Client(timeout=10) as http:
            for n, (response_id, text) in enumerate(acked.items()):
                got = http.get(replicas[n % 3].base_url + f"/v1/responses/{response_id}")
                body = got.json()
                if (got.status_code != 200 or body["status"] != "completed"
                        or body["output"][0]["content"][0]["text"] != text):
                    lost += 1
    finally:
        for replica in replicas:
            replica.stop()
    with psycopg.connect(url, autocommit=True) as conn:
        statuses = dict(conn.execute(
            "SELECT status, count(*) FROM responses GROUP BY status").fetchall())
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = [row[0] for row in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c "
            "ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relam = "
            "(SELECT oid FROM pg_am WHERE amname = 'btree')").fetchall()]
        for index in indexes:
            conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
        orphans = conn.execute(
            "SELECT count(*) FROM response_events e LEFT JOIN responses r "
            "ON r.id = e.response_id WHERE r.id IS NULL").fetchone()
    running = statuses.get("queued", 0) + statuses.get("in_progress", 0)
    print(f"- {kills} kills, {len(acked)} acknowledged responses, {failures} failed "
          f"attempts (retried on another replica)")
    print(f"- acknowledged responses lost: {lost}; rows left queued/in_progress after "
          f"the lease: {running}; rows by status: {statuses}")
    print(f"- amcheck (bt_index_check with heap check) on {len(indexes)} indexes: clean; "
          f"events without a response: {orphans[0] if orphans else '?'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["store", "live", "crash"])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--crash-seconds", type=float, default=150.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replicas-bench-") as folder, \
            throwaway_cluster() as cluster:
        tmp = Path(folder)
        if "store" in args.parts:
            part_store(cluster, tmp, args.seconds)
        if "live" in args.parts:
            part_live(cluster, tmp, args.streams)
        if "crash" in args.parts:
            part_crash(cluster, tmp, args.crash_seconds)


if __name__ == "__main__":
    main()
