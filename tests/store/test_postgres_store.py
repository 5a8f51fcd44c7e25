"""PostgresStore's own properties: replicas migrating an empty database at once, schema
versions, leases (a kill -9'd replica's running rows failed by a survivor, every
acknowledged row kept), and choosing the store from the settings."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from tests.store.children import run_and_kill
from tests.store.test_store_protocol import record
from tests.support.waiting import wait_until
from trio_responses.config import Settings
from trio_responses.store.base import ResponseStore
from trio_responses.store.postgres import PostgresStore
from trio_responses.store.postgres_schema import MIGRATIONS
from trio_responses.web.state import build_store


def sql(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query)  # type: ignore[arg-type]  # the tests' own SQL
        return cursor.fetchall() if cursor.description is not None else []


def test_satisfies_protocol() -> None:
    # Checked by mypy: PostgresStore must structurally match ResponseStore.
    _: ResponseStore = PostgresStore("postgresql://unused/db")


async def test_replicas_starting_at_once_on_an_empty_database_all_come_up(
        postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url, pool_size=2) for _ in range(4)]
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for store in stores:
                    nursery.start_soon(store.open)
        await stores[0].create(record("resp_1"))
        for store in stores:
            assert await store.get("resp_1", "owner-a") is not None
        assert sql(postgres_url, "SELECT version FROM trio_responses_schema") == [
            (len(MIGRATIONS),)]
        assert sql(postgres_url, "SELECT count(*) FROM instances") == [(4,)]
    finally:
        for store in stores:
            await store.aclose()
    # A closed replica leaves at once, not after its lease.
    assert sql(postgres_url, "SELECT count(*) FROM instances") == [(0,)]


async def test_newer_or_foreign_schema_is_refused_and_left_alone(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    await store.aclose()
    sql(postgres_url, "UPDATE trio_responses_schema SET version = 99")
    newer = PostgresStore(postgres_url)
    with pytest.raises(RuntimeError, match="newer"):
        await newer.open()
    assert sql(postgres_url, "SELECT version FROM trio_responses_schema") == [(99,)]

    sql(postgres_url, "DROP TABLE trio_responses_schema")
    with pytest.raises(RuntimeError, match="no schema version"):
        await PostgresStore(postgres_url).open()


async def test_unreachable_database_is_a_clear_error() -> None:
    store = PostgresStore("postgresql://nobody@/nowhere?host=/nonexistent&connect_timeout=1")
    with pytest.raises(RuntimeError, match="cannot reach"):
        await store.open()
    await store.aclose()


# A replica that writes the way the runtime does (create in_progress, then finish),
# printing one line per row once finish() returned (the acknowledgement), and one running
# row it never finishes; killed with SIGKILL mid-way.
CHILD = """
import json, sys, trio
from trio_responses.store import StoredResponse
from trio_responses.store.postgres import PostgresStore

async def main(url, start, n):
    store = PostgresStore(url, lease_seconds=1.0)
    await store.open()
    running = {"id": "resp_running", "object": "response", "status": "in_progress"}
    await store.create(StoredResponse(id=f"resp_running_{start}", owner="k",
        status="in_progress", background=True, previous_response_id=None, created_at=0.0,
        response=running, input_items=()))
    for i in range(start, start + n):
        rid = f"resp_{i:04d}"
        row = {"id": rid, "object": "response", "status": "in_progress"}
        await store.create(StoredResponse(
            id=rid, owner="k", status="in_progress", background=True,
            previous_response_id=None, created_at=float(i), response=row,
            input_items=({"id": f"msg_{i}", "text": "é" * i},)))
        final = {**row, "status": "completed", "output_text": f"answer {i} \\u2028 ✓"}
        events = [{"type": "response.completed", "sequence_number": i}]
        assert await store.finish(rid, final, events)
        print(json.dumps({"id": rid, "response": final, "events": events}), flush=True)
    await trio.sleep_forever()

trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


async def test_a_killed_replicas_running_rows_fail_after_its_lease(postgres_url: str) -> None:
    survivor = PostgresStore(postgres_url, lease_seconds=1.0)
    await survivor.open()
    try:
        acked: list[dict[str, Any]] = []
        with trio.fail_after(60):
            for cycle, kill_after in enumerate((5, 20)):
                rows = await run_and_kill(CHILD, [postgres_url, str(cycle * 1000), "200"],
                                          kill_after)
                assert kill_after <= len(rows) < 200, "the kill should land mid-way"
                acked.extend(rows)
            # The survivor's heartbeat sweeps the dead replicas' rows once their lease
            # (1 s) ran out: no row stays running.
            await trio.to_thread.run_sync(lambda: wait_until(
                lambda: sql(postgres_url, "SELECT count(*) FROM responses "
                            "WHERE status IN ('queued', 'in_progress')") == [(0,)],
                timeout=30, what="no running row left", interval=0.1))
        for ack in acked:
            got = await survivor.get(ack["id"], "k")
            assert got is not None and got.status == "completed"
            assert got.response == ack["response"]
            assert await survivor.events(ack["id"], "k", after=-1, limit=10) == ack["events"]
        for start in (0, 1000):
            got = await survivor.get(f"resp_running_{start}", "k")
            assert got is not None and got.status == "failed"
            assert got.response["error"]["code"] == "server_error"
        statuses = dict(sql(postgres_url,
                            "SELECT status, count(*) FROM responses GROUP BY status"))
        assert set(statuses) == {"completed", "failed"}
        assert statuses["failed"] <= 4  # the never-finished rows, and one mid-write per kill
        # The dead replicas are forgotten; the survivor is still there.
        assert sql(postgres_url, "SELECT id FROM instances") == [(survivor.instance,)]
    finally:
        await survivor.aclose()


def test_store_url_chooses_postgres() -> None:
    settings = Settings(store_url="postgresql://u@db.internal:5432/responses",
                        store_pool_size=3, store_lease_seconds=12)
    store = build_store(settings)
    assert isinstance(store, PostgresStore) and store.lease_seconds == 12
    assert Settings.from_args([], {"TRIO_RESPONSES_STORE_URL": "postgres://h/db"}
                              ).store_url == "postgres://h/db"
    for bad in ({"store_url": "sqlite:///x.db"}, {"store_url": "postgresql://h/db",
                                                   "store_path": "/x.db"},
                {"store_lease_seconds": 0}):
        with pytest.raises(ValueError):
            Settings(**bad)
