"""SQLiteStore: the ResponseStore protocol, start-up recovery, schema versions,
concurrency, and durability across kill -9 (RELIABILITY.md, test plan rows 15-16)."""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store.children import run_and_kill
from trio_responses.config import default_store_path
from trio_responses.store import (
    TERMINAL_STATUSES,
    ResponseStore,
    SQLiteStore,
    StoredResponse,
)
from trio_responses.store import base as store_base
from trio_responses.store import sqlite as sqlite_module


def response_obj(rid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": "response", "status": status, "output": [], **extra}


def record(
    rid: str,
    *,
    owner: str = "owner-a",
    status: str = "in_progress",
    previous: str | None = None,
    background: bool = False,
) -> StoredResponse:
    return StoredResponse(
        id=rid,
        owner=owner,
        status=status,
        background=background,
        previous_response_id=previous,
        created_at=1_700_000_000.25,
        response=response_obj(rid, status, text="héllo ✓ \u2028 \x00"),
        input_items=({"id": f"msg_{rid}", "type": "message", "role": "user", "content": "hi"},),
    )


def raw(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the file with a connection of its own, as another process would."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A directory that does not exist yet: open() must create it.
    return tmp_path / "data" / "trio_responses" / "responses.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    assert await s.open() == 0
    yield s
    await s.aclose()


async def reopen(path: Path) -> tuple[SQLiteStore, int]:
    s = SQLiteStore(path)
    return s, await s.open()


def test_satisfies_protocol() -> None:
    # Checked by mypy: SQLiteStore must structurally match ResponseStore.
    _: ResponseStore = SQLiteStore("unused")


async def test_create_get_delete_with_owner_isolation(store: SQLiteStore) -> None:
    rec = record("resp_1", background=True, previous=None)
    await store.create(rec)
    # get() leaves the input items out; input_items() reads them.
    row = dataclasses.replace(rec, input_items=())
    assert await store.get("resp_1", "owner-a") == row
    assert await store.input_items("resp_1", "owner-a") == list(rec.input_items)
    # Another key sees nothing, and cannot delete it.
    assert await store.get("resp_1", "owner-b") is None
    assert await store.input_items("resp_1", "owner-b") is None
    assert await store.events("resp_1", "owner-b", after=-1, limit=5) is None
    assert await store.delete("resp_1", "owner-b") is False
    assert await store.get("resp_1", "owner-a") == row
    assert await store.get("resp_missing", "owner-a") is None

    assert await store.delete("resp_1", "owner-a") is True
    assert await store.get("resp_1", "owner-a") is None
    assert await store.delete("resp_1", "owner-a") is False

    # Ids are unique across owners; a duplicate is a bug in the caller, not a new row.
    await store.create(record("resp_2"))
    with pytest.raises(sqlite3.IntegrityError):
        await store.create(record("resp_2", owner="owner-b"))
    assert await store.get("resp_2", "owner-b") is None


async def test_create_refuses_inconsistent_or_non_json_rows(store: SQLiteStore) -> None:
    bad_status = StoredResponse(
        id="resp_1", owner="o", status="completed", background=False,
        previous_response_id=None, created_at=0.0,
        response=response_obj("resp_1", "in_progress"), input_items=(),
    )
    with pytest.raises(ValueError, match="status"):
        await store.create(bad_status)
    nan = StoredResponse(
        id="resp_nan", owner="o", status="completed", background=False,
        previous_response_id=None, created_at=0.0,
        response=response_obj("resp_nan", "completed", score=math.nan), input_items=(),
    )
    with pytest.raises(ValueError):
        await store.create(nan)
    assert await store.get("resp_1", "o") is None
    assert await store.get("resp_nan", "o") is None


async def test_finish_is_conditional(store: SQLiteStore) -> None:
    await store.create(record("resp_1", background=True))
    events = ({"type": "response.created", "sequence_number": 0},)
    cancelled = response_obj("resp_1", "cancelled")
    assert await store.finish("resp_1", cancelled, events) is True

    # The engine's late result must not overwrite the cancellation.
    late = response_obj("resp_1", "completed", output=[{"type": "message"}])
    assert await store.finish("resp_1", late, ({"type": "late", "sequence_number": 0},)) is False
    got = await store.get("resp_1", "owner-a")
    assert got is not None
    assert got.status == "cancelled"
    assert got.response == cancelled
    assert got.event_count == 1
    assert await store.events("resp_1", "owner-a", after=-1, limit=5) == list(events)

    assert await store.finish("resp_missing", late) is False
    await store.create(record("resp_2"))
    for status in ("in_progress", "queued", None):
        with pytest.raises(ValueError, match="terminal"):
            await store.finish("resp_2", {"id": "resp_2", "status": status})
    got2 = await store.get("resp_2", "owner-a")
    assert got2 is not None and got2.status == "in_progress"


async def test_concurrent_finishes_of_one_row_have_one_winner(store: SQLiteStore) -> None:
    await store.create(record("resp_1"))
    winners: list[dict[str, Any]] = []

    async def finisher(i: int) -> None:
        status = sorted(TERMINAL_STATUSES)[i % len(TERMINAL_STATUSES)]
        final = response_obj("resp_1", status, attempt=i)
        if await store.finish("resp_1", final):
            winners.append(final)

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(finisher, i)
    assert len(winners) == 1
    got = await store.get("resp_1", "owner-a")
    assert got is not None
    assert got.response == winners[0] and got.status == winners[0]["status"]


async def test_chain_order_missing_link_and_owner(store: SQLiteStore) -> None:
    await store.create(record("resp_a", status="completed"))
    await store.create(record("resp_b", status="completed", previous="resp_a"))
    await store.create(record("resp_c", previous="resp_b"))
    chain = await store.chain("resp_c", "owner-a")
    assert chain is not None
    assert [r.id for r in chain] == ["resp_a", "resp_b", "resp_c"]
    assert chain[-1] == record("resp_c", previous="resp_b")  # with its input items
    assert [r.id for r in await store.chain("resp_a", "owner-a") or []] == ["resp_a"]
    assert await store.chain("resp_c", "owner-b") is None
    assert await store.chain("resp_missing", "owner-a") is None

    # An ancestor that belongs to someone else counts as missing.
    await store.create(record("resp_x", owner="owner-b", status="completed"))
    await store.create(record("resp_y", previous="resp_x"))
    assert await store.chain("resp_y", "owner-a") is None

    assert await store.delete("resp_b", "owner-a")
    assert await store.chain("resp_c", "owner-a") is None


async def test_chain_cycle_and_depth_bound(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API cannot make a loop (a previous response exists before its successor), but a
    # damaged file must not hang the server.
    await store.create(record("resp_p", previous="resp_q"))
    await store.create(record("resp_q", previous="resp_p"))
    with trio.fail_after(5):
        assert await store.chain("resp_p", "owner-a") is None

    monkeypatch.setattr(store_base, "MAX_CHAIN_DEPTH", 5)  # walk_chain reads it there
    previous = None
    for i in range(6):
        await store.create(record(f"resp_{i}", status="completed", previous=previous))
        previous = f"resp_{i}"
    five = await store.chain("resp_4", "owner-a")
    assert five is not None and [r.id for r in five] == [f"resp_{i}" for i in range(5)]
    assert await store.chain("resp_5", "owner-a") is None


async def test_reopen_fails_unfinished_rows_and_keeps_terminal_rows_byte_identical(
    db_path: Path,
) -> None:
    s, marked = await reopen(db_path)
    assert marked == 0
    await s.create(record("resp_q", status="queued", background=True))
    await s.create(record("resp_r", status="in_progress", background=True))
    await s.create(record("resp_c", status="completed"))
    await s.create(record("resp_x", status="in_progress", owner="owner-b"))
    events = ({"type": "response.completed", "sequence_number": 3, "text": "ü\u2028"},)
    assert await s.finish("resp_x", response_obj("resp_x", "cancelled"), events)
    await s.aclose()
    select = "SELECT * FROM responses WHERE id IN ('resp_c', 'resp_x') ORDER BY id"
    terminal_before = raw(db_path, select)

    s, marked = await reopen(db_path)
    try:
        assert marked == 2
        assert raw(db_path, select) == terminal_before
        for rid in ("resp_q", "resp_r"):
            got = await s.get(rid, "owner-a")
            assert got is not None
            expected = dict(record(rid).response)
            expected["status"] = "failed"
            expected["error"] = {
                "code": "server_error",
                "message": "The server stopped while this response was running.",
            }
            assert got.status == "failed"
            assert got.response == expected
            # Everything else is untouched.
            assert got.background
            assert await s.input_items(rid, "owner-a") == list(record(rid).input_items)
            # ...and the row is final now: a late result cannot revive it.
            assert not await s.finish(rid, response_obj(rid, "completed"))
    finally:
        await s.aclose()

    s, marked = await reopen(db_path)
    await s.aclose()
    assert marked == 0


async def test_file_settings_and_lifecycle(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    with pytest.raises(RuntimeError, match="not open"):
        await s.get("resp_1", "o")
    await s.open()
    with pytest.raises(RuntimeError, match="already"):
        await s.open()
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert raw(db_path, "PRAGMA user_version") == [(len(sqlite_module.MIGRATIONS),)]
    for i in range(300):
        await s.create(record(f"resp_{i}", status="completed"))
    await s.aclose()
    await s.aclose()  # idempotent
    wal = trio.Path(f"{db_path}-wal")
    assert not await wal.exists() or (await wal.stat()).st_size == 0
    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]
    with pytest.raises(RuntimeError, match="closed"):
        await s.get("resp_1", "owner-a")
    with pytest.raises(RuntimeError, match="closed"):
        await s.create(record("resp_new"))


def write_raw(path: Path, *statements: str) -> None:
    """Make a file the way some other program (or an older or newer us) would have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()


async def assert_open_refused(path: Path, match: str) -> None:
    s = SQLiteStore(path)
    with pytest.raises(RuntimeError, match=match):
        await s.open()
    with pytest.raises(RuntimeError, match="not open"):  # unusable, not half open
        await s.get("resp_1", "")
    await s.aclose()


async def test_newer_schema_version_is_refused_and_left_alone(db_path: Path) -> None:
    write_raw(
        db_path,
        "CREATE TABLE responses (id TEXT PRIMARY KEY, whatever BLOB)",
        "INSERT INTO responses VALUES ('resp_1', x'00')",
        f"PRAGMA user_version = {len(sqlite_module.MIGRATIONS) + 1}",
    )
    before = await trio.Path(db_path).read_bytes()
    await assert_open_refused(db_path, "newer")
    assert await trio.Path(db_path).read_bytes() == before


async def test_unversioned_foreign_file_is_refused(db_path: Path) -> None:
    write_raw(db_path, "CREATE TABLE responses (something_else TEXT)")
    await assert_open_refused(db_path, "trio_responses store")
    assert raw(db_path, "PRAGMA user_version") == [(0,)]
    assert raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'index'") == []


async def test_migrations_apply_only_missing_scripts_atomically(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = await reopen(db_path)
    await s.create(record("resp_1", status="completed"))
    await s.aclose()
    current = len(sqlite_module.MIGRATIONS)
    rows = raw(db_path, "SELECT * FROM responses")

    # A broken next script (its second statement fails) leaves the file as it was.
    broken = "CREATE TABLE extra (a TEXT); SELECT nope FROM nowhere;"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", (*sqlite_module.MIGRATIONS, broken))
    await assert_open_refused(db_path, f"schema version {current + 1}")
    assert raw(db_path, "PRAGMA user_version") == [(current,)]
    assert raw(db_path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == []

    # A good next script runs once, on top of the others (re-running them would fail).
    good = "ALTER TABLE responses ADD COLUMN note TEXT; CREATE TABLE extra (a TEXT);"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", (*sqlite_module.MIGRATIONS[:current], good))
    s, _ = await reopen(db_path)
    assert await s.get("resp_1", "owner-a") == dataclasses.replace(
        record("resp_1", status="completed"), input_items=())
    await s.aclose()
    assert raw(db_path, "PRAGMA user_version") == [(current + 1,)]
    assert raw(db_path, "SELECT * FROM responses") == [(*rows[0], None)]
    s, _ = await reopen(db_path)
    await s.aclose()


async def test_many_concurrent_writers_all_land(store: SQLiteStore, db_path: Path) -> None:
    async def writer(i: int) -> None:
        rid = f"resp_{i:03d}"
        await store.create(record(rid, owner=f"owner-{i % 7}", background=True))
        final = response_obj(rid, "completed", n=i)
        completed = {"type": "response.completed", "n": i, "sequence_number": 0}
        assert await store.finish(rid, final, [completed])
        got = await store.get(rid, f"owner-{i % 7}")
        assert got is not None and got.response == final

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(writer, i)
    assert raw(db_path, "SELECT count(*), min(status), max(status) FROM responses") == [
        (200, "completed", "completed")
    ]
    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]


async def test_cancelled_callers_leave_the_store_consistent(
    store: SQLiteStore, db_path: Path
) -> None:
    done: set[str] = set()

    async def writer(i: int, cancel_scope: trio.CancelScope) -> None:
        await store.create(record(f"resp_{i}", status="completed"))
        done.add(f"resp_{i}")
        if len(done) == 100:
            # Cancelled while one call is in its thread and the rest wait for the lock.
            cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for i in range(300):
            nursery.start_soon(writer, i, nursery.cancel_scope)
    # Whatever a caller saw return is there; nothing is half written; the store still works.
    stored = {rid for (rid,) in raw(db_path, "SELECT id FROM responses")}
    assert 100 <= len(done) < 300
    assert done <= stored and len(stored - done) <= 1
    for rid in stored:
        assert await store.get(rid, "owner-a") == dataclasses.replace(
            record(rid, status="completed"), input_items=())
    await store.create(record("resp_after"))
    assert await store.get("resp_after", "owner-a") is not None
    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]


# Any JSON a client could send or be shown; codec="utf-8" leaves out lone surrogates,
# which cannot be stored as UTF-8 text at all.
json_text = st.text(alphabet=st.characters(codec="utf-8"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=json_values, item=json_values)
async def test_json_round_trip(tmp_path: Path, payload: Any, item: Any) -> None:
    s = SQLiteStore(tmp_path / "hyp.sqlite3")
    await s.open()
    try:
        rid = f"resp_{os.urandom(8).hex()}"
        rec = StoredResponse(
            id=rid, owner="ö\u2028", status="in_progress", background=False,
            previous_response_id=None, created_at=0.5,
            response=response_obj(rid, "in_progress", payload=payload),
            input_items=({"id": "i", "v": item},),
        )
        await s.create(rec)
        assert await s.get(rid, "ö\u2028") == dataclasses.replace(rec, input_items=())
        assert await s.input_items(rid, "ö\u2028") == list(rec.input_items)
        final = response_obj(rid, "completed", payload=payload)
        assert await s.finish(rid, final, [{"type": "x", "v": payload, "sequence_number": 0}])
        got = await s.get(rid, "ö\u2028")
        assert got is not None and got.response == final
        assert await s.events(rid, "ö\u2028", after=-1, limit=5) == [
            {"type": "x", "v": payload, "sequence_number": 0}]
    finally:
        await s.aclose()


# The child writes the way the runtime does (create in_progress, then finish) and prints
# one line per row only after finish() returned: that line is the acknowledgement. Its
# first line says how many running rows open() found (left by the previous child).
CHILD = """
import json, sys, trio
from trio_responses.store import SQLiteStore, StoredResponse

async def main(path, start, n):
    store = SQLiteStore(path)
    print(json.dumps({"marked": await store.open()}), flush=True)
    for i in range(start, start + n):
        rid = f"resp_{i:04d}"
        running = {"id": rid, "object": "response", "status": "in_progress"}
        await store.create(StoredResponse(
            id=rid, owner="k", status="in_progress", background=True,
            previous_response_id=None, created_at=float(i), response=running,
            input_items=({"id": f"msg_{i}", "text": "é" * i},)))
        final = {**running, "status": "completed", "output_text": f"answer {i} \\u2028 ✓"}
        events = [{"type": "response.completed", "sequence_number": i}]
        assert await store.finish(rid, final, events)
        print(json.dumps({"id": rid, "response": final, "events": events}), flush=True)
    await trio.sleep_forever()

trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


async def run_child(path: Path, start: int, n: int, kill_after: int
                    ) -> list[dict[str, Any]]:
    """The child, killed after ``kill_after`` acknowledgements; every line it wrote
    (the "marked" line first)."""
    return await run_and_kill(CHILD, [str(path), str(start), str(n)], kill_after)


async def test_kill_9_crash_loop_keeps_every_acknowledged_row(db_path: Path) -> None:
    n = 200
    acked: list[dict[str, Any]] = []
    with trio.fail_after(15):
        for cycle, kill_after in enumerate((10, 25, 40)):
            marked_line, *rows = await run_child(db_path, cycle * 1000, n, kill_after)
            # At most the row being written when the previous kill landed.
            assert marked_line["marked"] <= (1 if cycle else 0)
            # The writes run back to back, so the kill lands while the child is writing.
            assert kill_after <= len(rows) < n, "the kill should land mid-way"
            acked.extend(rows)

    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]
    s, marked = await reopen(db_path)
    try:
        assert marked <= 1
        for ack in acked:
            got = await s.get(ack["id"], "k")
            assert got is not None
            assert got.response == ack["response"] and got.status == "completed"
            assert await s.events(ack["id"], "k", after=-1, limit=5) == ack["events"]
        statuses = dict(raw(db_path, "SELECT status, count(*) FROM responses GROUP BY status"))
        assert set(statuses) <= {"completed", "failed"}
        assert statuses["completed"] >= len(acked)
        assert statuses.get("failed", 0) <= 3  # one per kill at most
    finally:
        await s.aclose()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TRIO_RESPONSES_STORE_PATH": "/srv/x.db", "XDG_DATA_HOME": "/xdg"}, "/srv/x.db"),
        ({"XDG_DATA_HOME": "/xdg"}, "/xdg/trio_responses/responses.sqlite3"),
        ({"XDG_DATA_HOME": "relative"}, "~/.local/share/trio_responses/responses.sqlite3"),
        ({}, "~/.local/share/trio_responses/responses.sqlite3"),
    ],
)
def test_default_store_path(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in ("TRIO_RESPONSES_STORE_PATH", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_store_path() == Path(expected).expanduser()
