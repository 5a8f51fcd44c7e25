"""The store protocol's conversations, one suite for every store (SQLite, PostgreSQL,
and the in-memory store the runtime tests use):
ownership, append order and atomicity, the item limit, cursor pages in both orders, a
response's final write and its turn in one transaction. Then SQLite only: the schema v3
upgrade of an existing store, and kill -9 in the middle of appends."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.store.children import run_and_kill
from tests.store.conftest import STORE_KINDS, factory_for
from tests.support.memory_store import MemoryStore
from trio_responses.store import SQLiteStore, StoredResponse
from trio_responses.store.base import (
    ConversationAppend,
    ConversationFull,
    ResponseStore,
    StoredConversation,
    UnknownItem,
)
from trio_responses.store.sqlite import MIGRATIONS

OWNER = "owner-a"


def conversation(cid: str = "conv_1", owner: str = OWNER, **metadata: str
                 ) -> StoredConversation:
    return StoredConversation(id=cid, owner=owner, created_at=1_700_000_000,
                              metadata=metadata)


def item(n: int, text: str = "") -> dict[str, Any]:
    return {"id": f"msg_{n}", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text or f"item {n} é \u2028"}]}


def append(*numbers: int, cid: str = "conv_1", owner: str = OWNER) -> ConversationAppend:
    return ConversationAppend(conversation_id=cid, owner=owner,
                              items=tuple(item(n) for n in numbers))


@pytest.fixture(params=[*STORE_KINDS, "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseStore]:
    made: ResponseStore = (MemoryStore() if request.param == "memory"
                           else factory_for(request.param, request, tmp_path)())
    await made.open()
    yield made
    await made.aclose()


async def ids_of(store: ResponseStore, cid: str = "conv_1") -> list[str]:
    items = await store.conversation_items(cid, OWNER)
    assert items is not None
    return [i["id"] for i in items]


async def test_create_get_update_delete_by_owner(store: ResponseStore) -> None:
    await store.create_conversation(conversation(topic="x"), [item(0), item(1)])
    got = await store.get_conversation("conv_1", OWNER)
    assert got == conversation(topic="x")
    assert await ids_of(store) == ["msg_0", "msg_1"]
    # Another owner finds nothing and changes nothing.
    assert await store.get_conversation("conv_1", "owner-b") is None
    assert await store.update_conversation("conv_1", "owner-b", {"k": "v"}) is None
    assert await store.append_items(append(2, owner="owner-b")) is False
    assert await store.conversation_items("conv_1", "owner-b") is None
    assert await store.list_items("conv_1", "owner-b", after=None, limit=5,
                                  descending=False) is None
    assert await store.get_item("conv_1", "owner-b", "msg_0") is None
    assert await store.delete_item("conv_1", "owner-b", "msg_0") is False
    assert await store.delete_conversation("conv_1", "owner-b") is False
    assert await ids_of(store) == ["msg_0", "msg_1"]

    updated = await store.update_conversation("conv_1", OWNER, {"k": "v"})
    assert updated == conversation(k="v")
    assert await store.get_conversation("conv_1", OWNER) == updated
    assert await store.delete_conversation("conv_1", OWNER) is True
    assert await store.get_conversation("conv_1", OWNER) is None
    assert await store.conversation_items("conv_1", OWNER) is None
    assert await store.delete_conversation("conv_1", OWNER) is False
    assert await store.append_items(append(3)) is False
    # Its items went with it: the same id made again starts empty, at position 0.
    await store.create_conversation(conversation())
    assert await ids_of(store) == []
    assert await store.append_items(append(4)) is True
    assert await ids_of(store) == ["msg_4"]


async def test_appends_keep_their_order_and_the_limit_refuses_whole_appends(
        store: ResponseStore) -> None:
    await store.create_conversation(conversation(), [item(0)])
    assert await store.append_items(append(1, 2, 3), max_items=5) is True
    with pytest.raises(ConversationFull) as full:
        await store.append_items(append(4, 5), max_items=5)
    assert (full.value.count, full.value.limit) == (4, 5)
    assert await ids_of(store) == ["msg_0", "msg_1", "msg_2", "msg_3"]  # nothing of it
    assert await store.append_items(append(4), max_items=5) is True
    assert await store.append_items(append(5, 6)) is True  # 0: no limit
    assert await ids_of(store) == [f"msg_{n}" for n in range(7)]
    # Deleting an item leaves a gap that later appends do not fill.
    assert await store.delete_item("conv_1", OWNER, "msg_6") is True
    assert await store.delete_item("conv_1", OWNER, "msg_6") is False
    assert await store.append_items(append(7)) is True
    assert await ids_of(store) == [*(f"msg_{n}" for n in range(6)), "msg_7"]
    assert await store.get_item("conv_1", OWNER, "msg_3") == item(3)
    assert await store.get_item("conv_1", OWNER, "msg_6") is None


async def test_pages_in_both_orders(store: ResponseStore) -> None:
    await store.create_conversation(conversation(), [item(n) for n in range(5)])

    async def walk(descending: bool, limit: int) -> list[list[str]]:
        pages: list[list[str]] = []
        after = None
        while True:
            page = await store.list_items("conv_1", OWNER, after=after, limit=limit,
                                          descending=descending)
            assert page is not None
            pages.append([i["id"] for i in page.items])
            if not page.has_more:
                return pages
            after = page.items[-1]["id"]

    assert await walk(False, 2) == [["msg_0", "msg_1"], ["msg_2", "msg_3"], ["msg_4"]]
    assert await walk(True, 2) == [["msg_4", "msg_3"], ["msg_2", "msg_1"], ["msg_0"]]
    assert await walk(False, 5) == [[f"msg_{n}" for n in range(5)]]
    assert await walk(True, 100) == [[f"msg_{n}" for n in range(4, -1, -1)]]
    last = await store.list_items("conv_1", OWNER, after="msg_4", limit=3, descending=False)
    assert last is not None and last.items == () and not last.has_more
    with pytest.raises(UnknownItem):
        await store.list_items("conv_1", OWNER, after="msg_nope", limit=3, descending=True)
    await store.create_conversation(conversation("conv_empty"))
    empty = await store.list_items("conv_empty", OWNER, after=None, limit=3, descending=True)
    assert empty is not None and empty.items == () and not empty.has_more


def running(rid: str) -> StoredResponse:
    response = {"id": rid, "object": "response", "status": "in_progress", "output": []}
    return StoredResponse(id=rid, owner=OWNER, status="in_progress", background=False,
                          previous_response_id=None, created_at=1.0, response=response,
                          input_items=(item(10),))


async def test_finish_writes_the_response_and_its_turn_together(store: ResponseStore) -> None:
    await store.create_conversation(conversation(), [item(0)])
    await store.create(running("resp_1"))
    final = {**running("resp_1").response, "status": "completed", "output": [item(11)]}
    turn = ConversationAppend("conv_1", OWNER, (item(10), item(11)))
    assert await store.finish("resp_1", final, append=turn) is True
    assert await ids_of(store) == ["msg_0", "msg_10", "msg_11"]
    # A second finish (a late result after the first won) writes neither.
    late = {**final, "status": "failed"}
    assert await store.finish("resp_1", late, append=ConversationAppend(
        "conv_1", OWNER, (item(12),))) is False
    assert await ids_of(store) == ["msg_0", "msg_10", "msg_11"]
    got = await store.get("resp_1", OWNER)
    assert got is not None and got.response == final
    # The conversation deleted while the response ran: the response is still saved.
    await store.create(running("resp_2"))
    assert await store.delete_conversation("conv_1", OWNER) is True
    done = {**running("resp_2").response, "status": "completed"}
    assert await store.finish("resp_2", done, append=turn) is True
    got = await store.get("resp_2", OWNER)
    assert got is not None and got.status == "completed"


# -- SQLite only ---------------------------------------------------------------------------


def raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def test_a_v2_store_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    old = SQLiteStore(path, migrations=MIGRATIONS[:2])
    await old.open()
    await old.aclose()
    # A running row as a v2 server wrote it (this code's create() writes later columns).
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO responses (id, owner, status, background, created_at, response, "
            "input_items, instance) VALUES (?, ?, 'in_progress', 0, 1.0, ?, '[]', 'gone')",
            ("resp_old", OWNER, json.dumps(running("resp_old").response)))
    before = raw(path, "SELECT * FROM responses")
    assert raw(path, "PRAGMA user_version") == [(2,)]

    new = SQLiteStore(path)
    assert await new.open() == 1  # the running row a stopped process left, as always
    try:
        assert raw(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        after = raw(path, "SELECT * FROM responses")
        assert [row[:2] for row in after] == [row[:2] for row in before]
        await new.create_conversation(conversation(), [item(0)])
        assert await new.append_items(append(1)) is True
        assert await ids_of(new) == ["msg_0", "msg_1"]
    finally:
        await new.aclose()
    assert raw(path, "PRAGMA integrity_check") == [("ok",)]


# The child appends the way the runtime does: turns of TURN items, each acknowledged by a
# line printed after append_items() returned. Killed mid-way, then reopened: every
# acknowledged turn is there, and no turn is there in part.
TURN = 7
CHILD = """
import json, sys, trio
from trio_responses.store import SQLiteStore
from trio_responses.store.base import ConversationAppend, StoredConversation

async def main(path, cycle):
    store = SQLiteStore(path)
    await store.open()
    cid = f"conv_{cycle}"
    await store.create_conversation(StoredConversation(cid, "k", 1, {}))
    for turn in range(100000):
        items = tuple({"id": f"msg_{turn}_{i}", "type": "message", "n": turn,
                       "text": "é" * (turn % 50)} for i in range(TURN))
        assert await store.append_items(ConversationAppend(cid, "k", items))
        print(json.dumps({"conversation": cid, "turn": turn}), flush=True)

trio.run(main, sys.argv[1], sys.argv[2])
""".replace("TURN", str(TURN))


async def test_kill_9_mid_append_keeps_every_acknowledged_turn_whole(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    acked: list[dict[str, Any]] = []
    with trio.fail_after(30):
        for cycle, kill_after in enumerate((20, 50, 90)):
            acked += await run_and_kill(CHILD, [str(path), str(cycle)], kill_after)
    store = SQLiteStore(path)
    await store.open()
    try:
        for cycle in range(3):
            items = await store.conversation_items(f"conv_{cycle}", "k")
            assert items is not None
            turns = [i["n"] for i in items]
            # Whole turns only, in order, none missing before the last one.
            assert len(turns) % TURN == 0
            assert turns == sorted(turns) == [t for t in range(len(turns) // TURN)
                                              for _ in range(TURN)]
            acknowledged = [a["turn"] for a in acked if a["conversation"] == f"conv_{cycle}"]
            assert acknowledged and len(turns) // TURN >= len(acknowledged)
            # The kill landed while the child was appending: at most one unacknowledged
            # turn made it (committed, its line never printed).
            assert len(turns) // TURN - len(acknowledged) <= 1
    finally:
        await store.aclose()
    assert raw(path, "PRAGMA integrity_check") == [("ok",)]
