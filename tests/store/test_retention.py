"""Retention in the store (issue 13, finding 9): expire() and trim() delete finished
responses only, oldest first, a bounded batch per call, with their logs, and only the
owner over its quota loses any. Run against SQLite and the in-memory store alike."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.store.conftest import STORE_KINDS, factory_for
from tests.support.memory_store import MemoryStore
from trio_responses.store import SQLiteStore, StoredResponse
from trio_responses.store.base import ResponseStore


def row(rid: str, created_at: float, owner: str = "k", status: str = "in_progress",
        text: str = "") -> StoredResponse:
    return StoredResponse(
        id=rid, owner=owner, status="in_progress", background=True,
        previous_response_id=None, created_at=created_at,
        response={"id": rid, "status": "in_progress", "text": text},
        input_items=({"id": f"msg_{rid}", "type": "message", "content": "x"},))


async def add(store: ResponseStore, rid: str, created_at: float, *, owner: str = "k",
              finished: bool = True, text: str = "") -> None:
    await store.create(row(rid, created_at, owner))
    if finished:
        events = [{"type": "response.completed", "sequence_number": 0}]
        assert await store.finish(rid, {"id": rid, "status": "completed", "text": text},
                                  events)


@pytest.fixture(params=[*STORE_KINDS, "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[ResponseStore]:
    s: ResponseStore = MemoryStore() if request.param == "memory" \
        else factory_for(request.param, request, tmp_path)()
    await s.open()
    yield s
    await s.aclose()


async def test_expire_deletes_old_finished_responses_in_batches(store: ResponseStore) -> None:
    for i in range(5):
        await add(store, f"resp_old{i}", 100.0 + i)
    await add(store, "resp_running", 50.0, finished=False)
    await add(store, "resp_new", 1000.0)
    await add(store, "resp_other", 101.5, owner="other")

    assert await store.expire(created_before=500.0, limit=2) == 2
    assert await store.get("resp_old0", "k") is None
    assert await store.get("resp_old2", "k") is not None  # the oldest go first
    assert await store.expire(created_before=500.0, limit=10) == 4  # every owner's
    assert await store.expire(created_before=500.0, limit=10) == 0
    assert await store.get("resp_running", "k") is not None  # never a running one
    assert await store.get("resp_new", "k") is not None
    assert await store.events("resp_old4", "k", after=-1, limit=5) is None


async def test_trim_deletes_the_oldest_of_an_owner_over_its_quota(
        store: ResponseStore) -> None:
    for i in range(6):
        await add(store, f"resp_big{i}", 100.0 + i, text="x" * 1000)
    await add(store, "resp_running", 50.0, finished=False)
    await add(store, "resp_small", 100.0, owner="small")

    # Each of the big owner's responses takes 1,100-1,200 bytes (with its input items and
    # log), the running one ~150: three and the running one fit in 4,000.
    assert await store.trim(max_bytes_per_owner=4000, limit=2) == 2
    assert await store.trim(max_bytes_per_owner=4000, limit=10) == 1
    assert await store.trim(max_bytes_per_owner=4000, limit=10) == 0
    kept = [f"resp_big{i}" for i in range(6)
            if await store.get(f"resp_big{i}", "k") is not None]
    assert kept == ["resp_big3", "resp_big4", "resp_big5"]
    assert await store.get("resp_running", "k") is not None
    assert await store.get("resp_small", "small") is not None


async def test_sizes_of_a_store_written_before_v5(tmp_path: Path) -> None:
    from trio_responses.store import sqlite as sqlite_module

    path = tmp_path / "old.sqlite3"
    old = SQLiteStore(path, migrations=sqlite_module.MIGRATIONS[:4])
    await old.open()
    await old.aclose()
    with closing(sqlite3.connect(path)) as conn, conn:  # what a v4 server wrote
        conn.execute(
            "INSERT INTO responses (id, owner, status, background, created_at, response, "
            "input_items, event_count) VALUES ('resp_1', 'k', 'completed', 1, 1.0, ?, '[]', 1)",
            ('{"id":"resp_1","text":"' + "é" * 100 + '"}',))
        conn.execute("INSERT INTO response_events VALUES ('resp_1', 0, '{\"n\":0}')")
    new = SQLiteStore(path)
    await new.open()
    await new.aclose()
    with closing(sqlite3.connect(path)) as conn:
        (size,) = conn.execute("SELECT size FROM responses").fetchone()
    assert size == len('{"id":"resp_1","text":""}') + 200 + len("[]") + len('{"n":0}')
