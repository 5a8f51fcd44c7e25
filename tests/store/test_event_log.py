"""The event log apart from the row (issue 13, finding 2): get() loads neither the log
nor the input items, events() reads the log in pages, a store written before schema v4
keeps its logs, and deleting a response deletes its log."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import STORE_KINDS, factory_for
from tests.support.memory_store import MemoryStore
from trio_responses.store import SQLiteStore, StoredResponse
from trio_responses.store import sqlite as sqlite_module
from trio_responses.store.base import ResponseStore


def running(rid: str, owner: str = "k") -> StoredResponse:
    return StoredResponse(
        id=rid, owner=owner, status="in_progress", background=True,
        previous_response_id=None, created_at=1.0,
        response={"id": rid, "object": "response", "status": "in_progress"},
        input_items=({"id": "msg_1", "type": "message", "role": "user", "content": "x"},))


def log(n: int) -> list[dict[str, Any]]:
    return [{"type": "response.output_text.delta", "sequence_number": i, "delta": str(i)}
            for i in range(n)]


@pytest.fixture(params=[*STORE_KINDS, "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    s: ResponseStore = MemoryStore() if request.param == "memory" \
        else factory_for(request.param, request, tmp_path)()
    await s.open()
    yield s
    await s.aclose()


async def test_events_are_read_in_pages_by_their_owner_only(store: ResponseStore) -> None:
    await store.create(running("resp_1"))
    final = {"id": "resp_1", "object": "response", "status": "completed"}
    assert await store.finish("resp_1", final, log(10))
    row = await store.get("resp_1", "k")
    assert row is not None and row.event_count == 10 and row.input_items == ()
    assert await store.events("resp_1", "k", after=-1, limit=4) == log(4)
    assert await store.events("resp_1", "k", after=3, limit=4) == log(8)[4:]
    assert await store.events("resp_1", "k", after=8, limit=4) == log(10)[9:]
    assert await store.events("resp_1", "k", after=9, limit=4) == []
    assert await store.events("resp_1", "other", after=-1, limit=4) is None
    assert await store.events("resp_missing", "k", after=-1, limit=4) is None
    assert await store.input_items("resp_1", "k") == list(running("resp_1").input_items)

    # A response without a log (foreground, or its process died) has none to read.
    await store.create(running("resp_2"))
    assert await store.events("resp_2", "k", after=-1, limit=4) == []
    assert (await store.get("resp_2", "k")).event_count == 0  # type: ignore[union-attr]

    assert await store.delete("resp_1", "k")
    assert await store.events("resp_1", "k", after=-1, limit=4) is None


async def test_deleting_a_response_deletes_its_log(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    await store.open()
    await store.create(running("resp_1"))
    await store.finish("resp_1", {"id": "resp_1", "status": "completed"}, log(5))
    assert await store.delete("resp_1", "k")
    await store.aclose()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM response_events").fetchone() == (0,)


async def test_a_store_written_before_v4_keeps_its_logs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = SQLiteStore(path, migrations=sqlite_module.MIGRATIONS[:3])
    await old.open()
    await old.aclose()
    # What a v3 server wrote: the log as a JSON array in the row.
    with closing(sqlite3.connect(path)) as conn, conn:
        for rid, events in (("resp_log", log(3)), ("resp_none", None)):
            conn.execute(
                "INSERT INTO responses (id, owner, status, background, previous_response_id,"
                " created_at, response, input_items, events) VALUES (?,?,?,?,?,?,?,?,?)",
                (rid, "k", "completed", 1, None, 1.0,
                 json.dumps({"id": rid, "status": "completed"}), "[]",
                 None if events is None else json.dumps(events)))
    store = SQLiteStore(path)
    await store.open()
    try:
        got = await store.get("resp_log", "k")
        assert got is not None and got.event_count == 3
        assert await store.events("resp_log", "k", after=-1, limit=10) == log(3)
        assert (await store.get("resp_none", "k")).event_count == 0  # type: ignore[union-attr]
    finally:
        await store.aclose()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM responses WHERE events IS NOT NULL"
                            ).fetchone() == (0,)
