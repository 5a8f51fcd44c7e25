"""The ResponseStore protocol, one suite for every store (tests/store/conftest.py:
SQLite and PostgreSQL): ownership, the conditional final write and its one winner, chains,
the sweep of rows a gone process left running, concurrent writers and cancelled callers,
JSON exactly as written. The SQLite file's own properties (WAL, kill -9, the schema's
upgrades) are in test_sqlite_store.py; PostgreSQL's (replicas, leases, migrations racing)
in test_postgres_store.py."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import trio

from tests.store.conftest import StoreFactory
from trio_responses.store import TERMINAL_STATUSES, ResponseStore, StoredResponse


def response_obj(rid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": status, "output": [], **extra}


def record(rid: str, *, owner: str = "owner-a", status: str = "in_progress",
           previous: str | None = None, background: bool = False) -> StoredResponse:
    return StoredResponse(
        id=rid, owner=owner, status=status, background=background,
        previous_response_id=previous, created_at=1_700_000_000.25,
        # NUL, a line separator and non-ASCII: what PostgreSQL's text refuses raw.
        response=response_obj(rid, status, text="héllo ✓ \u2028 \x00", z=1, a=2),
        input_items=({"id": f"msg_{rid}", "type": "message", "role": "user",
                      "content": "hi"},),
    )


async def test_create_get_delete_with_owner_isolation(shared_store: ResponseStore) -> None:
    store = shared_store
    rec = record("resp_1", background=True)
    await store.create(rec)
    got = await store.get("resp_1", "owner-a")
    # get() leaves the input items out: input_items() reads them.
    assert got == dataclasses.replace(rec, input_items=())
    assert await store.input_items("resp_1", "owner-a") == list(rec.input_items)
    assert await store.input_items("resp_1", "owner-b") is None
    # Key order is kept: the object is shown exactly as it was written.
    assert got is not None and list(got.response) == list(rec.response)
    assert await store.get("resp_1", "owner-b") is None
    assert await store.delete("resp_1", "owner-b") is False
    assert await store.get("resp_missing", "owner-a") is None
    assert await store.delete("resp_1", "owner-a") is True
    assert await store.get("resp_1", "owner-a") is None
    assert await store.delete("resp_1", "owner-a") is False

    # Ids are unique across owners; a duplicate is a bug in the caller, not a new row.
    await store.create(record("resp_2"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.create(record("resp_2", owner="owner-b"))
    assert await store.get("resp_2", "owner-b") is None


async def test_create_refuses_inconsistent_or_non_json_rows(shared_store: ResponseStore
                                                            ) -> None:
    bad_status = StoredResponse(
        id="resp_1", owner="o", status="completed", background=False,
        previous_response_id=None, created_at=0.0,
        response=response_obj("resp_1", "in_progress"), input_items=())
    with pytest.raises(ValueError, match="status"):
        await shared_store.create(bad_status)
    nan = StoredResponse(
        id="resp_nan", owner="o", status="completed", background=False,
        previous_response_id=None, created_at=0.0,
        response=response_obj("resp_nan", "completed", score=math.nan), input_items=())
    with pytest.raises(ValueError):
        await shared_store.create(nan)
    assert await shared_store.get("resp_1", "o") is None
    assert await shared_store.get("resp_nan", "o") is None


async def test_finish_is_conditional(shared_store: ResponseStore) -> None:
    store = shared_store
    await store.create(record("resp_1", background=True))
    events = ({"type": "response.created", "sequence_number": 0},)
    cancelled = response_obj("resp_1", "cancelled")
    assert await store.finish("resp_1", cancelled, events) is True
    late = response_obj("resp_1", "completed", output=[{"type": "message"}])
    assert await store.finish("resp_1", late, ({"type": "late", "sequence_number": 1},)) is False
    got = await store.get("resp_1", "owner-a")
    assert got is not None and got.status == "cancelled"
    assert got.response == cancelled and got.event_count == 1
    assert await store.events("resp_1", "owner-a", after=-1, limit=10) == list(events)
    assert await store.finish("resp_missing", late) is False
    await store.create(record("resp_2"))
    for status in ("in_progress", "queued", None):
        with pytest.raises(ValueError, match="terminal"):
            await store.finish("resp_2", {"id": "resp_2", "status": status})


async def test_concurrent_finishes_of_one_row_have_one_winner(new_store: StoreFactory
                                                              ) -> None:
    # Two store objects: two processes (replicas) racing for the same row.
    stores = [new_store(), new_store()]
    for store in stores:
        await store.open()
    try:
        await stores[0].create(record("resp_1"))
        winners: list[dict[str, Any]] = []

        async def finisher(i: int) -> None:
            status = sorted(TERMINAL_STATUSES)[i % len(TERMINAL_STATUSES)]
            final = response_obj("resp_1", status, attempt=i)
            if await stores[i % 2].finish("resp_1", final):
                winners.append(final)

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(finisher, i)
        assert len(winners) == 1
        for store in stores:
            got = await store.get("resp_1", "owner-a")
            assert got is not None and got.response == winners[0]
    finally:
        for store in stores:
            await store.aclose()


async def test_chain_order_missing_link_owner_and_cycle(shared_store: ResponseStore) -> None:
    store = shared_store
    await store.create(record("resp_a", status="completed"))
    await store.create(record("resp_b", status="completed", previous="resp_a"))
    await store.create(record("resp_c", previous="resp_b"))
    chain = await store.chain("resp_c", "owner-a")
    assert chain is not None and [r.id for r in chain] == ["resp_a", "resp_b", "resp_c"]
    assert chain[-1] == record("resp_c", previous="resp_b")  # with its input items
    assert await store.chain("resp_c", "owner-b") is None
    assert await store.chain("resp_missing", "owner-a") is None
    await store.create(record("resp_x", owner="owner-b", status="completed"))
    await store.create(record("resp_y", previous="resp_x"))
    assert await store.chain("resp_y", "owner-a") is None
    assert await store.delete("resp_b", "owner-a")
    assert await store.chain("resp_c", "owner-a") is None
    # A loop (the API cannot make one; a damaged store can) is not found, never a hang.
    await store.create(record("resp_p", previous="resp_q"))
    await store.create(record("resp_q", previous="resp_p"))
    with trio.fail_after(10):
        assert await store.chain("resp_p", "owner-a") is None


async def test_reopen_fails_unfinished_rows_and_keeps_terminal_rows(new_store: StoreFactory
                                                                    ) -> None:
    s = new_store()
    assert await s.open() == 0
    await s.create(record("resp_q", status="queued", background=True))
    await s.create(record("resp_r", status="in_progress", background=True))
    await s.create(record("resp_c", status="completed"))
    await s.create(record("resp_x", status="in_progress", owner="owner-b"))
    assert await s.finish("resp_x", response_obj("resp_x", "cancelled"),
                          ({"type": "response.cancelled", "sequence_number": 0,
                            "text": "ü\u2028"},))
    terminal_before = [await s.get("resp_c", "owner-a"), await s.get("resp_x", "owner-b")]
    await s.aclose()

    s = new_store()
    try:
        assert await s.open() == 2
        assert [await s.get("resp_c", "owner-a"),
                await s.get("resp_x", "owner-b")] == terminal_before
        for rid in ("resp_q", "resp_r"):
            got = await s.get(rid, "owner-a")
            assert got is not None and got.status == "failed"
            expected = {**record(rid).response, "status": "failed", "error": {
                "code": "server_error",
                "message": "The server stopped while this response was running."}}
            assert got.response == expected
            assert got.background
            assert await s.input_items(rid, "owner-a") == list(record(rid).input_items)
            assert not await s.finish(rid, response_obj(rid, "completed"))
    finally:
        await s.aclose()
    s = new_store()
    assert await s.open() == 0
    await s.aclose()


async def test_a_live_process_keeps_its_running_rows(new_store: StoreFactory) -> None:
    # A second process (a replica, or the new version in a rollout) opening the store
    # leaves the first one's running rows alone.
    first, second = new_store(), new_store()
    await first.open()
    try:
        await first.create(record("resp_run"))
        assert await second.open() == 0
        got = await second.get("resp_run", "owner-a")
        assert got is not None and got.status == "in_progress"
        assert await second.finish("resp_run", response_obj("resp_run", "completed"))
        got = await first.get("resp_run", "owner-a")
        assert got is not None and got.status == "completed"
    finally:
        await second.aclose()
        await first.aclose()


async def test_many_concurrent_writers_and_cancelled_callers(shared_store: ResponseStore
                                                             ) -> None:
    store = shared_store

    async def writer(i: int) -> None:
        rid = f"resp_{i:03d}"
        await store.create(record(rid, owner=f"owner-{i % 7}", background=True))
        final = response_obj(rid, "completed", n=i)
        assert await store.finish(rid, final, [{"type": "response.completed",
                                                "sequence_number": 0, "n": i}])
        got = await store.get(rid, f"owner-{i % 7}")
        assert got is not None and got.response == final

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(writer, i)

    done: set[str] = set()

    async def creator(i: int, scope: trio.CancelScope) -> None:
        await store.create(record(f"resp_c{i}", status="completed"))
        done.add(f"resp_c{i}")
        if len(done) == 50:
            scope.cancel()

    async with trio.open_nursery() as nursery:
        for i in range(150):
            nursery.start_soon(creator, i, nursery.cancel_scope)
    # Whatever a caller saw return is there, whole; the store still works.
    for rid in done:
        assert await store.get(rid, "owner-a") == dataclasses.replace(
            record(rid, status="completed"), input_items=())
    await store.create(record("resp_after"))
    assert await store.get("resp_after", "owner-a") is not None
