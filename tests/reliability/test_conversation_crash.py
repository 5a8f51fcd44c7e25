"""kill -9 while responses extend conversations (RELIABILITY.md rows 15-16, for the
Conversations API).

``python -m trio_responses --engine scripted`` on a SQLite store, under a mixed load of
clients that each extend a conversation of their own and one they all share: responses
(plain, streamed, background) with ``conversation``, and items appends of three items.
It is killed with SIGKILL mid-load, restarted on the same store, and after every restart:

- every turn a client was shown finished (a response's terminal event or final JSON, an
  append's 200) is in its conversation, in the order that client made them;
- no turn is there in part: each conversation is a sequence of whole turns (a response's
  input followed by its output, or an append's three items);
- every response the store has as finished on a conversation has its turn there (the
  final object and the turn are one transaction), and ``integrity_check`` is ok.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from tests.reliability.conftest import Figures, Scale
from tests.reliability.procs import ServerProcess
from tests.reliability.test_crash_safety import call, integrity, read_stream, settle
from tests.reliability.wire import TERMINAL

FINISHED = {"completed", "incomplete"}
APPEND_SIZE = 3
# A turn's marker: the client that made it, its kind (t: a response, b: an append), a number.
TURN = re.compile(r"^(?P<client>w\d+) (?P<kind>t|b)(?P<n>\d+)")


@dataclass
class Ledger:
    """Per conversation, the markers of the turns clients were shown finished, in the
    order each client was shown them."""

    acked: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0

    def marker(self, client: str, kind: str) -> str:
        self.counter += 1
        return f"{client} {kind}{self.counter}"


async def one_operation(port: int, ledger: Ledger, rng: random.Random, conversation: str,
                        client: str) -> None:
    roll = rng.random()
    words = " ".join(f"x{rng.randrange(100)}" for _ in range(rng.randint(1, 12)))
    if roll < 0.25:
        marker = ledger.marker(client, "b")
        items = [{"role": "user", "content": f"{marker} i{j}"} for j in range(APPEND_SIZE)]
        await call(port, "POST", f"/v1/conversations/{conversation}/items", {"items": items})
        ledger.acked[conversation].append(marker)
        return
    marker = ledger.marker(client, "t")
    body = {"model": "scripted", "input": f"{marker} {words}", "conversation": conversation}
    if roll < 0.55:
        final = await call(port, "POST", "/v1/responses", body)
    elif roll < 0.8:
        events = await read_stream(port, body)
        final = next(e["response"] for e in events if e["type"] in TERMINAL)
    else:
        final = await settle(port, (await call(port, "POST", "/v1/responses",
                                               {**body, "background": True}))["id"])
    if final["status"] in FINISHED:
        ledger.acked[conversation].append(marker)


async def load(server: ServerProcess, ledger: Ledger, rng: random.Random,
               conversations: dict[str, str]) -> None:
    """Six clients, each on its own conversation or the shared one, until the kill."""
    killed = False

    async def worker(number: int, seed: int) -> None:
        worker_rng = random.Random(seed)
        try:
            while True:
                owner = f"w{number}" if worker_rng.random() < 0.7 else "all"
                await one_operation(server.port, ledger, worker_rng, conversations[owner],
                                    f"w{number}")
        except (h11.RemoteProtocolError, trio.BrokenResourceError, OSError, EOFError,
                AssertionError, ValueError, StopIteration) as exc:
            if not killed:
                raise AssertionError(f"failed while the server ran: {exc!r}") from exc

    async with trio.open_nursery() as nursery:
        for number in range(6):
            nursery.start_soon(worker, number, rng.randrange(2**32))
        await trio.sleep(rng.uniform(0.4, 1.2))
        killed = True
        await trio.to_thread.run_sync(server.kill9)


def whole_turns(texts: list[str]) -> list[str]:
    """The markers of the turns a conversation's item texts make, failing on any turn
    that is there in part."""
    turns: list[str] = []
    position = 0
    while position < len(texts):
        match = TURN.match(texts[position])
        assert match is not None, texts[position]
        marker = f"{match['client']} {match['kind']}{match['n']}"
        if match["kind"] == "b":
            expected = [f"{marker} i{j}" for j in range(APPEND_SIZE)]
            assert texts[position:position + APPEND_SIZE] == expected, texts[position:]
            position += APPEND_SIZE
        else:
            assert texts[position + 1:position + 2] == [f"You said: {texts[position]}"], \
                texts[position:position + 2]
            position += 2
        turns.append(marker)
    return turns


async def conversation_texts(port: int, conversation: str) -> list[str]:
    texts: list[str] = []
    after = ""
    while True:
        page = await call(port, "GET", f"/v1/conversations/{conversation}/items"
                          f"?order=asc&limit=100{after}")
        texts += ["".join(part["text"] for part in item["content"]) for item in page["data"]]
        if not page["has_more"]:
            return texts
        after = f"&after={page['last_id']}"


def finished_turns_in_store(path: Any) -> dict[str, list[list[str]]]:
    """Per conversation, the output item ids of every finished response the store has."""
    turns: dict[str, list[list[str]]] = {}
    with closing(sqlite3.connect(path)) as conn:
        for (text,) in conn.execute("SELECT response FROM responses WHERE status IN "
                                    "('completed', 'incomplete')"):
            response = json.loads(text)
            if response.get("conversation"):
                turns.setdefault(response["conversation"]["id"], []).append(
                    [item["id"] for item in response["output"]])
    return turns


def interrupted_on_conversations(path: Any) -> int:
    """Responses on a conversation that a kill interrupted (failed by the start-up sweep):
    their turns must be nowhere, which whole_turns checks."""
    with closing(sqlite3.connect(path)) as conn:
        return sum(1 for (text,) in conn.execute(
            "SELECT response FROM responses WHERE status = 'failed'")
            if json.loads(text).get("conversation"))


def item_ids(path: Any, conversation: str) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute(
            "SELECT item_id FROM conversation_items WHERE conversation_id = ?",
            (conversation,))}


async def check_after_restart(server: ServerProcess, ledger: Ledger) -> list[str]:
    """Whole turns only, every acknowledged one there, each client's in its order;
    returns the losses."""
    lost: list[str] = []
    for conversation, acked in ledger.acked.items():
        turns = whole_turns(await conversation_texts(server.port, conversation))
        missing = [marker for marker in acked if marker not in turns]
        lost += [f"{conversation}: {marker}" for marker in missing]
        for client in {marker.split()[0] for marker in acked}:
            mine = [marker for marker in acked if marker.startswith(client + " ")]
            present = [marker for marker in turns if marker in mine]
            assert present == mine or missing, (present, mine)
    for conversation, outputs in finished_turns_in_store(server.store_path).items():
        ids = item_ids(server.store_path, conversation)
        for output in outputs:
            assert set(output) <= ids, f"a finished response's turn is missing: {output}"
    return lost


async def test_kill_9_keeps_every_acknowledged_turn_whole(
    server_factory: Callable[..., ServerProcess], scale: Scale, figures: Figures
) -> None:
    server = server_factory(token_delay=0.002)
    ledger = Ledger()
    rng = random.Random(15)
    lost: list[str] = []
    conversations: dict[str, str] = {}
    for cycle in range(scale.conversation_crash_cycles + 1):
        server.start()
        if not conversations:
            for owner in ("all", *(f"w{n}" for n in range(6))):
                created = await call(server.port, "POST", "/v1/conversations", {})
                conversations[owner] = created["id"]
                ledger.acked[created["id"]] = []
        lost += await check_after_restart(server, ledger)
        if cycle < scale.conversation_crash_cycles:
            await load(server, ledger, rng, conversations)
    server.stop()
    assert integrity(server.store_path) == "ok"
    interrupted = interrupted_on_conversations(server.store_path)
    figures.add("kill -9 cycles (conversations)", scale.conversation_crash_cycles)
    figures.add("responses on a conversation interrupted by the kills", interrupted)
    figures.add("acknowledged turns checked after every restart",
                sum(len(t) for t in ledger.acked.values()))
    figures.add("lost acknowledged turns", len(lost))
    assert not lost, lost
    assert interrupted, "no kill landed while a response on a conversation ran"
