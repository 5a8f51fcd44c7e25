"""The response store in SQLite.

How it works
------------
Writes use one ``sqlite3`` connection, opened with ``check_same_thread=False``, by one
worker thread at a time: every write takes a ``trio.Lock`` (FIFO, so callers are served in
order) and runs its SQL in ``trio.to_thread.run_sync``. The Trio thread never waits on the
disk, and SQLite only ever sees one writer from this process. Reads run on a pool of
read-only connections of their own (``sqlite_pool.py``, ``read_connections``, default
8): in WAL mode a reader never waits for the writer nor the writer for readers, so a
slow read (a long ``previous_response_id`` chain, a big row) holds up neither the writes
nor other reads. A call that has reached its thread
runs to the end even if the calling task is cancelled (``to_thread`` does not abandon the
thread by default), so a write is either done or never started, and the lock is only
released once the connection is idle again.

Durability: WAL journal with ``synchronous=NORMAL``. A commit is in the WAL file (the OS
page cache) when the call returns, so it survives ``kill -9`` of the server; only a power
loss or OS crash can lose the last commits, never corrupt the file. ``FULL`` would fsync on
every commit, which is what it would cost to promise more. ``busy_timeout`` (5 s) covers a
second process (a backup, the ``sqlite3`` shell) holding a lock for a moment; SQLite's
automatic checkpoint (every 1000 pages) keeps the WAL bounded while running, and
``aclose()`` runs ``PRAGMA optimize`` and truncates the WAL.

Schema: ``PRAGMA user_version`` is the number of scripts of :data:`MIGRATIONS` applied to
the file; ``open()`` applies ``MIGRATIONS[version:]`` in one transaction, and refuses a file
written by a newer version. In the same transaction it marks the rows a dead process left
``queued``/``in_progress`` as ``failed``, so no response stays running forever; rows of a
process still running on the same file (a rollout) are left alone (``instances.py``).

Rows hold JSON text (compact, UTF-8, no NaN/Infinity, so SQLite's JSON functions can read
it): the response object exactly as a client is shown it and the turn's input items. The
event log of background responses is a table of its own (schema v4), one row per event
keyed by (response, sequence number), read in pages; the row keeps only how many there
are. ``get`` selects the columns before ``input_items`` only, so SQLite does not even read
the input items' overflow pages. Conversations and their items are two more tables
(schema v3, ``sqlite_conversations.py``; their SQL, shared with PostgreSQL, in
``conversation_sql.py``). A response on a conversation writes its final object and
appends its turn in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from .base import (
    MAX_CHAIN_DEPTH,
    TERMINAL_STATUSES,
    ConversationAppend,
    Item,
    ItemPage,
    StoredConversation,
    StoredResponse,
    walk_chain,
)
from .conversation_sql import ConversationSQL
from .instances import InstanceLock
from .sqlite_conversations import SCHEMA_V3, in_transaction
from .sqlite_pool import ReadPool

__all__ = ["MAX_CHAIN_DEPTH", "MIGRATIONS", "SQLiteStore"]

_T = TypeVar("_T")

# Script N takes a store from schema version N to N+1. Append only: a released script is
# never edited, because files already at a later version will not run it again.
MIGRATIONS: tuple[str, ...] = (
    # v1. Every lookup is by primary key with owner as a filter on that one row, so an
    # index on owner would buy nothing; the partial index holds only running rows and makes
    # the start-up sweep cheap however many finished rows the store has.
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        background INTEGER NOT NULL,
        previous_response_id TEXT,
        created_at REAL NOT NULL,
        response TEXT NOT NULL,
        input_items TEXT NOT NULL,
        events TEXT
    );
    CREATE INDEX responses_unfinished ON responses (id)
        WHERE status IN ('queued', 'in_progress');
    """,
    # v2. The process that created a row (see instances.py), so the start-up sweep fails
    # only the running rows of processes that are gone.
    """
    ALTER TABLE responses ADD COLUMN instance TEXT;
    """,
    # v3. Conversations and their items (sqlite_conversations.py).
    SCHEMA_V3,
    # v4. The event log out of the row (issue 13, finding 2): a GET, cancel or DELETE
    # loaded a 200 MB log with the row. One row per event, read in pages; the old column
    # stays (NULL), as SQLite cannot drop it everywhere.
    """
    CREATE TABLE response_events (
        response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
        sequence_number INTEGER NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (response_id, sequence_number)
    );
    ALTER TABLE responses ADD COLUMN event_count INTEGER NOT NULL DEFAULT 0;
    INSERT OR IGNORE INTO response_events (response_id, sequence_number, event)
        SELECT r.id, coalesce(json_extract(e.value, '$.sequence_number'), e.key), e.value
        FROM responses AS r, json_each(r.events) AS e WHERE r.events IS NOT NULL;
    UPDATE responses SET events = NULL, event_count = (
        SELECT count(*) FROM response_events WHERE response_id = responses.id)
        WHERE events IS NOT NULL;
    """,
    # v5. Retention (issue 13, finding 9): each response's size in bytes (its JSON: the
    # object, the input items, the log), and indexes for the sweep: by age, and by owner
    # with the size (covering: summing an owner's sizes reads no row).
    """
    ALTER TABLE responses ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    UPDATE responses SET size = length(CAST(response AS BLOB))
        + length(CAST(input_items AS BLOB)) + coalesce((
            SELECT sum(length(CAST(event AS BLOB))) FROM response_events
            WHERE response_id = responses.id), 0);
    CREATE INDEX responses_by_age ON responses (created_at);
    CREATE INDEX responses_by_owner ON responses (owner, created_at, size);
    """,
)

# Longer chains (or a loop, which the API cannot create) are reported as not found.

_UNFINISHED = ("queued", "in_progress")
_INTERRUPTED_ERROR = {
    "code": "server_error",
    "message": "The server stopped while this response was running.",
}
# What get() loads: everything but the input items (and the old events column, NULL).
_ROW_COLUMNS = (
    "id, owner, status, background, previous_response_id, created_at, response, event_count"
)

# Conversations' SQL (conversation_sql.py): the caller's BEGIN IMMEDIATE serializes
# appends, so no row lock is taken.
conversations = ConversationSQL()

_INSERT_COLUMNS = (
    "id, owner, status, background, previous_response_id, created_at, response, input_items"
)
_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))
_UNFINISHED_SQL = ", ".join(f"'{status}'" for status in _UNFINISHED)


def _dumps(value: Any) -> str:
    # allow_nan=False: "NaN" is not JSON, and one such row would make json_set() in the
    # start-up sweep fail, i.e. the server could not start. Better to refuse the write.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _size(text: str) -> int:
    """What a JSON text takes, in UTF-8 bytes (as SQLite's length(CAST(... AS BLOB)))."""
    return len(text.encode())


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements. ``executescript`` cannot be used: on Python 3.11
    it commits the open transaction first, and migrations must be all or nothing."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending!r}")


def _row_to_record(row: tuple[Any, ...], items: str | None = None) -> StoredResponse:
    (rid, owner, status, background, previous, created_at, response, event_count) = row
    return StoredResponse(
        id=rid,
        owner=owner,
        status=status,
        background=bool(background),
        previous_response_id=previous,
        created_at=created_at,
        response=json.loads(response),
        input_items=tuple(json.loads(items)) if items is not None else (),
        event_count=event_count,
    )


def _user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


class SQLiteStore:
    """:class:`~trio_responses.store.base.ResponseStore` on one SQLite file."""

    def __init__(
        self, path: str | os.PathLike[str], *, migrations: Sequence[str] | None = None,
        read_connections: int = 8,
    ) -> None:
        """``migrations``: the schema scripts (default :data:`MIGRATIONS`); a test or a
        tool can pass another list, e.g. to upgrade a store written by an older one.
        ``read_connections``: the read pool's size (0: reads share the writer's
        connection and lock, as before the pool)."""
        self.path = Path(path)
        self._reads = ReadPool(self.path, read_connections) if read_connections else None
        self._migrations = tuple(MIGRATIONS if migrations is None else migrations)
        self._conn: sqlite3.Connection | None = None
        self._lock = trio.Lock()
        self._opened = False
        self._closed = False
        self._instance = InstanceLock(self.path)

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> int:
        async with self._lock:
            if self._opened or self._closed:
                raise RuntimeError(f"store {self.path}: open() was already called")
            self._opened = True
            # If opening fails the store stays unusable (calls raise RuntimeError), rather
            # than half open.
            conn, marked = await trio.to_thread.run_sync(self._open_sync)
            self._conn = conn
            return marked

    def _open_sync(self) -> tuple[sqlite3.Connection, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._instance.acquire()
        # isolation_level=None: no implicit transactions; single statements commit on their
        # own and multi-statement work says BEGIN/COMMIT explicitly.
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            # Checked before anything is written: a newer store is left exactly as it is.
            self._check_version(_user_version(conn))
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"store {self.path}: cannot use WAL journal (got {mode!r})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            marked = self._migrate_and_sweep(conn)
            if self._reads is not None:
                self._reads.open_sync()
        except BaseException:
            conn.close()
            self._instance.release()
            raise
        return conn, marked

    def _check_version(self, version: int) -> None:
        if version > len(self._migrations):
            raise RuntimeError(
                f"store {self.path} has schema version {version}, newer than this "
                f"trio_responses knows ({len(self._migrations)}); upgrade trio_responses or use "
                "another store path"
            )

    def _migrate_and_sweep(self, conn: sqlite3.Connection) -> int:
        # BEGIN IMMEDIATE takes the write lock before the version is read, so a second
        # process opening the same file at the same moment cannot migrate it twice.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _user_version(conn)
            self._check_version(version)
            for number, script in enumerate(self._migrations[version:], start=version):
                try:
                    for statement in _statements(script):
                        conn.execute(statement)
                except sqlite3.DatabaseError as exc:
                    raise RuntimeError(
                        f"store {self.path}: migration to schema version {number + 1} "
                        f"failed ({exc}); is this a trio_responses store?"
                    ) from exc
            if version != len(self._migrations):
                conn.execute(f"PRAGMA user_version = {len(self._migrations)}")
            # Running rows of processes still alive on this store (a rollout) are theirs.
            owners = [row[0] for row in conn.execute(
                f"SELECT DISTINCT instance FROM responses WHERE status IN ({_UNFINISHED_SQL})")]
            dead = [owner for owner in owners if not self._instance.is_alive(owner)]
            marked = 0
            for owner in dead:
                # One conditional UPDATE per dead process: the status column and the JSON
                # a client is shown change together; terminal rows are not touched.
                marked += conn.execute(
                    f"UPDATE responses SET status = 'failed', "
                    f"response = json_set(response, '$.status', 'failed', '$.error', json(?)) "
                    f"WHERE status IN ({_UNFINISHED_SQL}) AND instance IS ?",
                    (_dumps(_INTERRUPTED_ERROR), owner),
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise
        return marked

    async def aclose(self) -> None:
        # Shielded: a cancelled aclose() must still close the connection, after the call
        # in flight (bounded by busy_timeout) has finished.
        with trio.CancelScope(shield=True):
            if self._reads is not None:
                # The reads in flight end first; any later one is refused ("closed").
                await self._reads.aclose()
            async with self._lock:
                if self._closed:
                    return
                self._closed = True
                conn, self._conn = self._conn, None
                if conn is not None:
                    await trio.to_thread.run_sync(_close_sync, conn)
                    self._instance.release()

    # -- the protocol --------------------------------------------------------------------

    async def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._lock:
            if self._closed:
                raise RuntimeError(f"store {self.path} is closed")
            if self._conn is None:
                raise RuntimeError(f"store {self.path} is not open")
            return await trio.to_thread.run_sync(work, self._conn)

    async def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """A read: on the read pool (or the writer's connection without one)."""
        if self._reads is None:
            return await self._call(work)
        if self._closed:
            raise RuntimeError(f"store {self.path} is closed")
        if self._conn is None:
            raise RuntimeError(f"store {self.path} is not open")
        return await self._reads.run(work)

    async def create(self, record: StoredResponse) -> None:
        if record.response.get("status") != record.status:
            raise ValueError(
                f"response {record.id}: status {record.status!r} differs from the "
                f"response object's {record.response.get('status')!r}"
            )
        response, items = _dumps(record.response), _dumps(list(record.input_items))
        params = (
            record.id,
            record.owner,
            record.status,
            int(record.background),
            record.previous_response_id,
            record.created_at,
            response,
            items,
        )
        size = _size(response) + _size(items)

        def work(conn: sqlite3.Connection) -> None:
            # A duplicate id raises sqlite3.IntegrityError: ids are generated, so it is a bug.
            conn.execute(f"INSERT INTO responses ({_INSERT_COLUMNS}, instance, size) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (*params, self._instance.instance, size))

        await self._call(work)

    async def finish(
        self,
        response_id: str,
        response: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]] = (),
        *,
        append: ConversationAppend | None = None,
    ) -> bool:
        status = response.get("status")
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"response {response_id}: finish() needs a terminal status, "
                             f"got {status!r}")
        final = _dumps(response)
        log = [(response_id, int(event["sequence_number"]), _dumps(event)) for event in events]
        size = _size(final) + sum(_size(event) for _, _, event in log)
        params = (status, final, len(events), size, response_id)

        def work(conn: sqlite3.Connection) -> bool:
            # The condition is the whole point: whichever of cancel and the engine's result
            # is written first wins, and the other is dropped, atomically.
            cursor = conn.execute(
                "UPDATE responses SET status = ?, response = ?, event_count = ?, "
                "size = ? + length(CAST(input_items AS BLOB)) "
                f"WHERE id = ? AND status NOT IN ({_TERMINAL_SQL})",
                params,
            )
            written = cursor.rowcount == 1
            if written and log:
                conn.executemany("INSERT INTO response_events "
                                 "(response_id, sequence_number, event) VALUES (?, ?, ?)", log)
            if written and append is not None:
                conversations.append_items(conn, append, 0, _dumps)
            return written

        # One transaction: the final object, its log and the turn's items land together.
        return await self._call(in_transaction(work, write=True) if append or log else work)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        def work(conn: sqlite3.Connection) -> StoredResponse | None:
            return _get_sync(conn, response_id, owner)

        return await self._read(work)

    async def input_items(self, response_id: str, owner: str) -> list[Item] | None:
        def work(conn: sqlite3.Connection) -> list[Item] | None:
            row = conn.execute("SELECT input_items FROM responses WHERE id = ? AND owner = ?",
                               (response_id, owner)).fetchone()
            return None if row is None else list(json.loads(row[0]))

        return await self._read(work)

    async def events(self, response_id: str, owner: str, *, after: int, limit: int
                     ) -> list[Item] | None:
        def work(conn: sqlite3.Connection) -> list[Item] | None:
            if conn.execute("SELECT 1 FROM responses WHERE id = ? AND owner = ?",
                            (response_id, owner)).fetchone() is None:
                return None
            rows = conn.execute(
                "SELECT event FROM response_events WHERE response_id = ? "
                "AND sequence_number > ? ORDER BY sequence_number LIMIT ?",
                (response_id, after, limit)).fetchall()
            return [json.loads(event) for (event,) in rows]

        return await self._read(in_transaction(work, write=False))

    async def delete(self, response_id: str, owner: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
            )
            return cursor.rowcount == 1

        return await self._call(work)

    async def expire(self, *, created_before: float, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            ids = conn.execute(
                f"SELECT id FROM responses WHERE created_at < ? AND status IN "
                f"({_TERMINAL_SQL}) ORDER BY created_at LIMIT ?",
                (created_before, limit)).fetchall()
            conn.executemany("DELETE FROM responses WHERE id = ?", ids)
            return len(ids)

        return await self._call(in_transaction(work, write=True))

    async def trim(self, *, max_bytes_per_owner: int, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            over = conn.execute(
                "SELECT owner, sum(size) FROM responses GROUP BY owner HAVING sum(size) > ?",
                (max_bytes_per_owner,)).fetchall()
            doomed: list[tuple[str]] = []
            for owner, total in over:
                for rid, size in conn.execute(
                        f"SELECT id, size FROM responses WHERE owner = ? AND status IN "
                        f"({_TERMINAL_SQL}) ORDER BY created_at LIMIT ?",
                        (owner, limit - len(doomed))):
                    if total <= max_bytes_per_owner:
                        break
                    doomed.append((rid,))
                    total -= size
                if len(doomed) >= limit:
                    break
            conn.executemany("DELETE FROM responses WHERE id = ?", doomed)
            return len(doomed)

        return await self._call(in_transaction(work, write=True))

    async def chain(self, response_id: str, owner: str) -> list[StoredResponse] | None:
        def work(conn: sqlite3.Connection) -> list[StoredResponse] | None:
            # The whole walk in one thread hop, in one read transaction so a concurrent
            # delete (from another process) cannot show a half-deleted chain.
            conn.execute("BEGIN")
            try:
                return _chain_sync(conn, response_id, owner)
            finally:
                conn.execute("COMMIT")

        return await self._read(work)

    # -- conversations (conversation_sql.py) -------------------------------------------

    async def create_conversation(self, conversation: StoredConversation,
                                  items: Sequence[Item] = ()) -> None:
        await self._call(in_transaction(lambda conn: conversations.create_conversation(
            conn, conversation, items, _dumps), write=True))

    async def get_conversation(self, conversation_id: str, owner: str
                               ) -> StoredConversation | None:
        return await self._read(lambda conn: conversations.get_conversation(
            conn, conversation_id, owner))

    async def update_conversation(self, conversation_id: str, owner: str,
                                  metadata: Mapping[str, str]) -> StoredConversation | None:
        return await self._call(in_transaction(lambda conn: conversations.update_conversation(
            conn, conversation_id, owner, metadata, _dumps), write=True))

    async def delete_conversation(self, conversation_id: str, owner: str) -> bool:
        return await self._call(in_transaction(lambda conn: conversations.delete_conversation(
            conn, conversation_id, owner), write=True))

    async def append_items(self, append: ConversationAppend, *, max_items: int = 0) -> bool:
        return await self._call(in_transaction(lambda conn: conversations.append_items(
            conn, append, max_items, _dumps), write=True))

    async def conversation_items(self, conversation_id: str, owner: str
                                 ) -> list[Item] | None:
        return await self._read(in_transaction(lambda conn: conversations.conversation_items(
            conn, conversation_id, owner), write=False))

    async def list_items(self, conversation_id: str, owner: str, *, after: str | None,
                         limit: int, descending: bool) -> ItemPage | None:
        return await self._read(in_transaction(lambda conn: conversations.list_items(
            conn, conversation_id, owner, after, limit, descending), write=False))

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> Item | None:
        return await self._read(in_transaction(lambda conn: conversations.get_item(
            conn, conversation_id, owner, item_id), write=False))

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool:
        return await self._call(in_transaction(lambda conn: conversations.delete_item(
            conn, conversation_id, owner, item_id), write=True))


def _get_sync(conn: sqlite3.Connection, response_id: str, owner: str, *,
              with_items: bool = False) -> StoredResponse | None:
    columns = f"{_ROW_COLUMNS}, input_items" if with_items else _ROW_COLUMNS
    row = conn.execute(
        f"SELECT {columns} FROM responses WHERE id = ? AND owner = ?", (response_id, owner)
    ).fetchone()
    if row is None:
        return None
    return _row_to_record(row[:8], row[8]) if with_items else _row_to_record(row)


def _chain_sync(
    conn: sqlite3.Connection, response_id: str, owner: str
) -> list[StoredResponse] | None:
    return walk_chain(lambda rid: _get_sync(conn, rid, owner, with_items=True), response_id)


def _close_sync(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA optimize")
        # TRUNCATE leaves a zero-length WAL even if another process keeps the file open.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
