"""SQLiteStore's read pool (issue 13, finding 3): a slow read blocks neither a write nor
another read; reads see every write committed before them; the pool's connections
cannot write; closing waits for the reads in flight."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_responses.store import SQLiteStore, StoredResponse


def row(rid: str) -> StoredResponse:
    return StoredResponse(
        id=rid, owner="k", status="in_progress", background=True,
        previous_response_id=None, created_at=1.0,
        response={"id": rid, "object": "response", "status": "in_progress"},
        input_items=())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "s.sqlite3", read_connections=2)
    await s.open()
    yield s
    await s.aclose()


async def test_a_stuck_read_blocks_neither_writes_nor_other_reads(store: SQLiteStore) -> None:
    await store.create(row("resp_0"))
    release = threading.Event()
    started = trio.Event()

    def stuck(conn: sqlite3.Connection) -> int:
        # A read in the middle of its transaction, as a slow chain walk would be.
        conn.execute("BEGIN")
        try:
            count: int = conn.execute("SELECT count(*) FROM responses").fetchone()[0]
            trio.from_thread.run_sync(started.set)
            release.wait(10)
            return count
        finally:
            conn.execute("COMMIT")

    async with trio.open_nursery() as nursery:
        results: list[int] = []

        async def slow() -> None:
            results.append(await store._read(stuck))

        nursery.start_soon(slow)
        await started.wait()
        with trio.fail_after(5):  # not waiting for the stuck read
            await store.create(row("resp_1"))
            assert await store.finish("resp_1", {"id": "resp_1", "status": "completed"})
            got = await store.get("resp_1", "k")
            assert got is not None and got.status == "completed"
        release.set()
    # The stuck read saw the file as it was when its transaction began.
    assert results == [1]


async def test_pool_connections_cannot_write(store: SQLiteStore) -> None:
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
        await store._read(lambda conn: conn.execute("DELETE FROM responses"))


async def test_reads_wait_for_a_free_connection_and_close_waits_for_reads(
        tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.sqlite3", read_connections=1)
    await s.open()
    release = threading.Event()
    started = trio.Event()
    order: list[str] = []

    def hold(_: sqlite3.Connection) -> None:
        trio.from_thread.run_sync(started.set)
        release.wait(10)
        order.append("held read done")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(s._read, hold)
        await started.wait()

        async def second() -> None:
            await s.get("resp_x", "k")
            order.append("second read done")

        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert order == []  # the one connection is busy: the second read waits

        async def close() -> None:
            await s.aclose()
            order.append("closed")

        nursery.start_soon(close)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert order == ["held read done", "second read done", "closed"]
    with pytest.raises(RuntimeError, match="closed"):
        await s.get("resp_x", "k")


async def test_without_a_pool_reads_share_the_writer(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.sqlite3", read_connections=0)
    await s.open()
    try:
        await s.create(row("resp_1"))
        assert (await s.get("resp_1", "k")) is not None
    finally:
        await s.aclose()
