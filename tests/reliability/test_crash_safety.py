"""kill -9 and restart (RELIABILITY.md test plan rows 15 and 16).

The server runs as ``python -m trio_responses --engine scripted`` on a SQLite store. It is
killed with SIGKILL while background responses run and finished ones are stored, then
started again on the same store and port:

- the first HTTP answer the new process gives already shows the interrupted responses as
  ``failed`` (the start-up sweep runs before the port opens), and ``GET ?stream=true``
  gives them a terminal event;
- every finished row is byte-identical to what it was before the kill;
- in a crash loop under mixed load, every response a client was shown as finished (a
  terminal event, or a JSON object with a terminal status) is retrievable and identical
  after each restart, nothing stays running, and ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx
import trio

from tests.reliability.conftest import Figures, Scale
from tests.reliability.procs import ServerProcess
from tests.reliability.wire import TERMINAL, Wire, request_json
from tests.support.events import sdk_parse
from tests.support.memory_store import MemoryStore
from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine

TERMINAL_STATUSES = {"completed", "failed", "incomplete", "cancelled"}
INTERRUPTED = "The server stopped while this response was running."


def rows(path: Any) -> dict[str, tuple[Any, ...]]:
    """Every row of the store, read with a connection of our own."""
    with closing(sqlite3.connect(path)) as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT id, status, response, input_items, events FROM responses")}


def integrity(path: Any) -> str:
    with closing(sqlite3.connect(path)) as conn:
        result: str = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return result


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/responses", json={"model": "scripted", **body})
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()
    return value


async def read_stream(port: int, body: dict[str, Any], path: str = "/v1/responses",
                      method: str = "POST") -> list[dict[str, Any]]:
    """Every event of a stream, to its end."""
    async with await Wire.connect(port) as wire:
        if method == "POST":
            await wire.post_json(path, {"model": "scripted", "stream": True, **body})
        else:
            await wire.send_request("GET", path)
        events: list[dict[str, Any]] = []
        while (batch := await wire.next_events()) is not None:
            events += [event.json() for event in batch if event.data != "[DONE]"]
        assert not wire.parser.errors, wire.parser.errors
        return events


async def wait_status(client: httpx.AsyncClient, response_id: str, wanted: set[str]
                      ) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            value: dict[str, Any] = (await client.get(f"/v1/responses/{response_id}")).json()
            if value["status"] in wanted:
                return value
            await trio.sleep(0.02)


async def first_answer(server: ServerProcess, response_id: str) -> dict[str, Any]:
    """Start the server and return the first answer it gives about ``response_id``:
    connection refused is retried (the port is not open yet); nothing else is."""
    server.launch()
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
            while True:
                try:
                    response = await client.get(f"/v1/responses/{response_id}")
                except httpx.ConnectError:
                    await trio.sleep(0.005)
                    continue
                assert response.status_code == 200, response.text
                value: dict[str, Any] = response.json()
                return value


async def test_kill_9_fails_in_flight_responses_before_the_port_opens(
    server_factory: Callable[..., ServerProcess], figures: Figures
) -> None:
    server = server_factory(token_delay=0.002).start()
    finished: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for i in range(3):
            done = await create(client, input=f"plain {i}")
            finished[done["id"]] = done
        events = await read_stream(server.port, {"input": "streamed"})
        finished[events[-1]["response"]["id"]] = events[-1]["response"]
        chained = await create(client, input="and then", previous_response_id=done["id"])
        finished[chained["id"]] = chained
        queued = await create(client, input="in the background", background=True)
        finished[queued["id"]] = await wait_status(client, queued["id"], TERMINAL_STATUSES)
        stalled = await create(client, input="[[stall]]", background=True)
        await wait_status(client, stalled["id"], {"in_progress"})
        finished[stalled["id"]] = (await client.post(
            f"/v1/responses/{stalled['id']}/cancel")).json()
        in_flight = [(await create(client, input=f"[[stall]] {i}", background=True))["id"]
                     for i in range(3)]
        for response_id in in_flight:
            await wait_status(client, response_id, {"in_progress"})
        # A foreground stream in flight too: its row is in_progress until it ends.
        async with await Wire.connect(server.port) as wire:
            await wire.post_json("/v1/responses", {"model": "scripted", "stream": True,
                                                   "input": "[[stall]] foreground"})
            first = await wire.next_events()
            assert first
            in_flight.append(first[0].json()["response"]["id"])
            before = rows(server.store_path)
            server.kill9()
    for response_id, (status, *_) in before.items():
        assert (status in ("queued", "in_progress")) == (response_id in in_flight), status
    assert rows(server.store_path) == before, "the kill changed rows"

    # The first answer of the new process already shows the interrupted response failed.
    first_seen = await first_answer(server, in_flight[0])
    assert first_seen["status"] == "failed", first_seen
    assert first_seen["error"] == {"code": "server_error", "message": INTERRUPTED}
    server.wait_ready()
    after = rows(server.store_path)
    assert after.keys() == before.keys()
    for response_id, row in before.items():
        if response_id in in_flight:
            assert after[response_id][0] == "failed"
            assert json.loads(after[response_id][1]) == {
                **json.loads(row[1]), "status": "failed",
                "error": {"code": "server_error", "message": INTERRUPTED}}
        else:
            assert after[response_id] == row, "a finished row changed"

    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for response_id, shown in finished.items():
            assert (await client.get(f"/v1/responses/{response_id}")).json() == shown
        for response_id in in_flight[:3]:
            replay = await read_stream(server.port, {}, f"/v1/responses/{response_id}"
                                       "?stream=true", method="GET")
            assert replay[-1]["type"] == "response.failed", replay
            assert [e["sequence_number"] for e in replay] == list(range(len(replay)))
            for event in replay:
                sdk_parse(event)
            tail = await read_stream(server.port, {}, f"/v1/responses/{response_id}"
                                     "?stream=true&starting_after=0", method="GET")
            assert [e["type"] for e in tail] == ["response.failed"]
        # The background response that completed replays its whole log.
        replay = await read_stream(server.port, {}, f"/v1/responses/{queued['id']}"
                                   "?stream=true", method="GET")
        assert replay[-1]["response"] == finished[queued["id"]]
    assert integrity(server.store_path) == "ok"
    figures.add("stored rows / in flight at the kill", f"{len(before)} / {len(in_flight)}")


# -- the crash loop ------------------------------------------------------------------------


@dataclass
class Ledger:
    """What clients were shown: finished responses (to check after every restart), ids
    that may have been deleted (a delete in flight at the kill), ids seen running."""

    finished: dict[str, dict[str, Any]] = field(default_factory=dict)
    maybe_deleted: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)
    operations: int = 0

    def membership(self, response_id: str) -> list[str]:
        """Which of the ledger's sets hold an id (for a failure's message)."""
        return [name for name in ("finished", "maybe_deleted", "deleted", "started")
                if response_id in getattr(self, name)]

    def saw(self, response: dict[str, Any]) -> None:
        self.started.add(response["id"])
        if response["status"] in TERMINAL_STATUSES:
            self.finished[response["id"]] = response


async def call(port: int, method: str, path: str, payload: Any = None) -> Any:
    status, value = await request_json(port, method, path, payload)
    assert status == 200, (status, value)
    return value


async def settle(port: int, response_id: str, ledger: Ledger | None = None
                 ) -> dict[str, Any] | None:
    """Poll until finished. With a ledger, another worker may cancel the response (the
    ledger then holds it as finished) and a third delete it meanwhile: a 404 is right
    only then (None)."""
    with trio.fail_after(10):
        while True:
            status, value = await request_json(port, "GET", f"/v1/responses/{response_id}")
            if status == 404 and ledger is not None and response_id in ledger.maybe_deleted:
                return None
            assert status == 200, (status, value, response_id,
                                   ledger.membership(response_id) if ledger else None)
            if value["status"] in TERMINAL_STATUSES:
                result: dict[str, Any] = value
                return result
            await trio.sleep(0.02)


async def one_operation(port: int, ledger: Ledger, rng: random.Random) -> None:
    roll = rng.random()
    words = " ".join(f"w{rng.randrange(1000)}" for _ in range(rng.randint(1, 30)))
    if roll < 0.3:
        ledger.saw(await call(port, "POST", "/v1/responses",
                              {"model": "scripted", "input": words}))
    elif roll < 0.55:
        events = await read_stream(port, {"input": words})
        for event in events:
            if event["type"] in TERMINAL:
                ledger.saw(event["response"])
    elif roll < 0.75:
        queued = await call(port, "POST", "/v1/responses",
                            {"model": "scripted", "input": words, "background": True})
        ledger.saw(queued)
        final = await settle(port, queued["id"], ledger)
        if final is not None:
            ledger.saw(final)
    elif roll < 0.85:
        ledger.saw(await call(port, "POST", "/v1/responses", {
            "model": "scripted", "input": f"[[stall]] {words}", "background": True}))
    elif roll < 0.93 and ledger.finished:
        victim = rng.choice(sorted(ledger.finished))
        ledger.maybe_deleted.add(victim)
        status, value = await request_json(port, "DELETE", f"/v1/responses/{victim}")
        assert status in (200, 404), value
        ledger.deleted.add(victim)
        ledger.finished.pop(victim, None)
    else:
        running = sorted(ledger.started - set(ledger.finished) - ledger.deleted)
        if running:
            status, value = await request_json(
                port, "POST", f"/v1/responses/{rng.choice(running)}/cancel")
            if status == 200:
                ledger.saw(value)
    ledger.operations += 1


async def load(server: ServerProcess, ledger: Ledger, rng: random.Random) -> None:
    """Mixed operations from a few clients (raw sockets: a request cut by the kill
    leaves nothing half-closed in the client), until the process is killed."""
    killed = False

    async def worker(seed: int) -> None:
        worker_rng = random.Random(seed)
        try:
            while True:
                await one_operation(server.port, ledger, worker_rng)
        except (h11.RemoteProtocolError, trio.BrokenResourceError, OSError, EOFError,
                AssertionError, ValueError) as exc:
            if not killed:
                raise AssertionError(f"failed while the server ran: {exc!r}") from exc

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(worker, rng.randrange(2**32))
        await trio.sleep(rng.uniform(0.3, 1.2))
        killed = True
        await trio.to_thread.run_sync(server.kill9)


async def check_after_restart(server: ServerProcess, ledger: Ledger) -> list[str]:
    """Every finished response identical; nothing left running. Returns the losses."""
    lost: list[str] = []
    for response_id, shown in ledger.finished.items():
        status, value = await request_json(server.port, "GET", f"/v1/responses/{response_id}")
        if status == 404 and response_id in ledger.maybe_deleted:
            continue
        if status != 200 or value != shown:
            now = value.get("status") if status == 200 else status
            lost.append(f"{response_id}: shown {shown['status']}, now {now}")
    for response_id in sorted(ledger.started - set(ledger.finished) - ledger.deleted):
        status, value = await request_json(server.port, "GET", f"/v1/responses/{response_id}")
        if status == 200:
            assert value["status"] in TERMINAL_STATUSES, value
    return lost


async def test_crash_loop_keeps_every_finished_response(
    server_factory: Callable[..., ServerProcess], scale: Scale, figures: Figures
) -> None:
    server = server_factory(token_delay=0.002)
    ledger = Ledger()
    rng = random.Random(11)
    lost: list[str] = []
    started = time.monotonic()
    start_times: list[float] = []
    for cycle in range(scale.crash_cycles + 1):
        launched = time.monotonic()
        server.start()
        start_times.append(time.monotonic() - launched)
        lost += await check_after_restart(server, ledger)
        if cycle < scale.crash_cycles:
            await load(server, ledger, rng)
    server.stop()
    assert integrity(server.store_path) == "ok"
    statuses = [row[0] for row in rows(server.store_path).values()]
    assert set(statuses) <= TERMINAL_STATUSES, set(statuses)
    figures.add("kill -9 cycles", scale.crash_cycles)
    figures.add("operations / finished responses checked", f"{ledger.operations} / "
                f"{len(ledger.finished)}")
    figures.add("rows failed by the start-up sweep",
                sum(1 for row in rows(server.store_path).values()
                    if INTERRUPTED in (json.loads(row[1]).get("error") or {}).get("message", "")))
    figures.add("lost finished responses", len(lost))
    figures.add("crash loop seconds (process start to ready, mean)",
                f"{time.monotonic() - started:.1f} ({sum(start_times) / len(start_times):.2f})")
    assert not lost, lost


# -- shown finished only once saved --------------------------------------------------------


class SlowFinishStore(MemoryStore):
    """Saves a final object only after ``delay`` seconds in a worker thread (a busy disk):
    the window in which a kill -9 would lose it."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def finish(self, response_id: str, response: Mapping[str, Any],
                     events: Sequence[Mapping[str, Any]] = ()) -> bool:
        await trio.to_thread.run_sync(time.sleep, self.delay)
        return await super().finish(response_id, response, events)


def test_a_response_is_shown_finished_only_once_saved() -> None:
    """Polling GET while a background response ends: the first terminal status a client
    sees must already be in the store (else a crash right then loses what it saw)."""
    store = SlowFinishStore(0.5)
    settings = Settings(engine="scripted", port=0, responses_ping_interval_seconds=0)
    with ServerThread(settings, engine=ScriptedEngine(token_delay=0.001), store=store
                      ) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        queued = http.post("/v1/responses", json={"model": "scripted", "input": "hi",
                                                  "background": True}).json()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            shown = http.get(f"/v1/responses/{queued['id']}").json()
            if shown["status"] in TERMINAL_STATUSES:
                break
        saved = server.call(lambda: store.rows[queued["id"]])
    assert shown["status"] == "completed"
    assert saved.status == "completed", "shown completed before it was saved"
    assert dict(saved.response) == shown
