"""The response store in PostgreSQL, shared by every replica behind a load balancer.

How it works
------------
A bounded pool of psycopg 3 connections (``psycopg_pool.ConnectionPool``, sync). Every
call runs its SQL in ``trio.to_thread.run_sync`` on a connection borrowed for that call,
under a ``trio.CapacityLimiter`` as large as the pool, so no thread ever waits for a
connection and the Trio thread never waits on the network. A call that has reached its
thread runs to its end even if the calling task is cancelled (``to_thread`` does not
abandon it), so a write is done or never started. Connections are in autocommit mode;
multi-statement work runs in ``conn.transaction()``.

The schema and its migrations are in ``postgres_schema.py``; the conversation SQL in
``conversation_sql.py``; replicas' heartbeats, leases and the sweep that fails a
gone replica's running responses in ``postgres_leases.py``. Rows are the same as the
SQLite store's (JSON as text, exactly as a client is shown it), so both stores pass one
test suite (tests/store/).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool

from .base import (
    MAX_CHAIN_DEPTH,
    TERMINAL_STATUSES,
    ControlHandler,
    ConversationAppend,
    Item,
    ItemPage,
    StoredConversation,
    StoredResponse,
    walk_chain,
)
from .conversation_sql import ConversationSQL
from .postgres_leases import Heartbeat, fail_orphans, heartbeat
from .postgres_notify import CONTROL_CHANNEL, EVENTS_CHANNEL, Listener
from .postgres_schema import MIGRATION_LOCK_KEY, MIGRATIONS, SCHEMA_TABLE

__all__ = ["MAX_CHAIN_DEPTH", "PostgresStore", "is_postgres_url"]

_T = TypeVar("_T")

# What get() loads: everything but the input items (and the log, a table of its own).
_ROW_COLUMNS = (
    "id, owner, status, background, previous_response_id, created_at, response, event_count"
)
_INSERT_COLUMNS = (
    "id, owner, status, background, previous_response_id, created_at, response, input_items"
)
_TERMINAL = tuple(sorted(TERMINAL_STATUSES))
# Every response's size for the retention quota: its JSON texts' UTF-8 bytes.
_SIZES = (
    "SELECT r.id, r.owner, r.created_at, octet_length(r.response) "
    "+ octet_length(r.input_items) + coalesce((SELECT sum(octet_length(e.event)) "
    "FROM response_events AS e WHERE e.response_id = r.id), 0) AS size FROM responses AS r"
)


# Conversations' SQL (conversation_sql.py). Replicas append to one conversation at once:
# an append locks the conversation's row before it reads the last position, so appends
# are serialized per conversation and positions never collide.
conversations = ConversationSQL(mark="%s", append_lock=" FOR UPDATE")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _dumps(value: Any) -> str:
    # allow_nan=False: "NaN" is not JSON; refuse the write rather than store it.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _row_to_record(row: tuple[Any, ...], items: str | None = None) -> StoredResponse:
    (rid, owner, status, background, previous, created_at, response, event_count) = row
    return StoredResponse(
        id=rid, owner=owner, status=status, background=bool(background),
        previous_response_id=previous, created_at=created_at,
        response=json.loads(response),
        input_items=tuple(json.loads(items)) if items is not None else (),
        event_count=event_count,
    )


class PostgresStore:
    """:class:`~trio_responses.store.base.ResponseStore` on a PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 8, lease_seconds: float = 30.0,
                 migrations: Sequence[str] | None = None) -> None:
        """``url``: a libpq connection URI (``postgresql://user@host:port/db``).
        ``lease_seconds``: how long after its last heartbeat a replica counts as gone."""
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL: {url!r}")
        self.url = url
        self.instance = f"{os.uname().nodename}-{os.getpid()}-{secrets.token_hex(6)}"
        self.lease_seconds = lease_seconds
        self._migrations = tuple(MIGRATIONS if migrations is None else migrations)
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False,
                                    kwargs={"autocommit": True},
                                    check=ConnectionPool.check_connection,
                                    name="trio_responses")
        self._limiter = trio.CapacityLimiter(pool_size)
        self._heartbeat = Heartbeat(url, self.instance, lease_seconds, _dumps)
        self._listener: Listener | None = None
        self._watchers: dict[str, trio.Event] = {}
        self._control: ControlHandler | None = None
        self._state = "new"

    def __repr__(self) -> str:
        return f"PostgresStore({self._pool.conninfo!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> int:
        if self._state != "new":
            raise RuntimeError(f"{self!r}: open() was already called")
        self._state = "opening"
        try:
            marked = await trio.to_thread.run_sync(self._open_sync)
        except BaseException:
            self._state = "closed"
            await trio.to_thread.run_sync(self._pool.close)
            raise
        self._heartbeat.start()
        self._listener = Listener(self.url, trio.lowlevel.current_trio_token(), self._dispatch)
        await trio.to_thread.run_sync(self._listener.start)
        self._state = "open"
        return marked

    def _open_sync(self) -> int:
        # One connection first, for a clear error at once when the database is away (the
        # pool would retry in the background until its timeout).
        try:
            conn = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise RuntimeError(f"cannot reach the store database: {exc}") from exc
        with conn:
            self._migrate(conn)
            heartbeat(conn, self.instance, self.lease_seconds)
            marked = fail_orphans(conn, _dumps)
        self._pool.open(wait=True, timeout=30)
        return marked

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Replicas starting together: one migrates, the others wait here, then find
            # the schema current. The lock goes with the transaction.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(SCHEMA_TABLE)
            row = conn.execute("SELECT version FROM trio_responses_schema").fetchone()
            version = 0 if row is None else int(row[0])
            if version > len(self._migrations):
                raise RuntimeError(
                    f"the store database has schema version {version}, newer than this "
                    f"trio_responses knows ({len(self._migrations)}); upgrade trio_responses")
            if row is None:
                tables = conn.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename IN ('responses', 'conversations', 'instances')").fetchone()
                if tables is not None and tables[0]:
                    raise RuntimeError("the store database has tables named like ours but "
                                       "no schema version; is it a trio_responses store?")
            for number, script in enumerate(self._migrations[version:], start=version):
                try:
                    conn.execute(script)
                except psycopg.Error as exc:
                    raise RuntimeError(f"store migration to schema version {number + 1} "
                                       f"failed: {exc}") from exc
            if row is None:
                conn.execute("INSERT INTO trio_responses_schema (version) VALUES (%s)",
                             (len(self._migrations),))
            elif version != len(self._migrations):
                conn.execute("UPDATE trio_responses_schema SET version = %s",
                             (len(self._migrations),))

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self._state in ("closed", "closing"):
                return
            opened = self._state == "open"
            self._state = "closing"
            # Followers of responses running elsewhere stop waiting now (they find the
            # store closing and end their streams), not at their next safety re-read.
            watchers, self._watchers = self._watchers, {}
            for event in watchers.values():
                event.set()
            if opened:
                await trio.to_thread.run_sync(self._close_sync)
            self._state = "closed"

    def _close_sync(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self._heartbeat.stop()
        try:
            # Gone now, not after the lease: other replicas fail what is left running
            # (nothing, after a drain) at their next sweep.
            with self._pool.connection(timeout=10) as conn:
                conn.execute("DELETE FROM instances WHERE id = %s", (self.instance,))
        finally:
            self._pool.close()

    # -- calls -------------------------------------------------------------------------

    async def _call(self, work: Callable[[psycopg.Connection[Any]], _T], *,
                    transaction: bool = False) -> _T:
        if self._state != "open":
            raise RuntimeError(f"{self!r} is {'closed' if self._state != 'new' else 'not open'}")
        pool = self._pool

        def run() -> _T:
            with pool.connection() as conn:
                if not transaction:
                    return work(conn)
                with conn.transaction():
                    return work(conn)

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    async def create(self, record: StoredResponse) -> None:
        if record.response.get("status") != record.status:
            raise ValueError(
                f"response {record.id}: status {record.status!r} differs from the "
                f"response object's {record.response.get('status')!r}")
        params = (
            record.id, record.owner, record.status, record.background,
            record.previous_response_id, record.created_at, _dumps(record.response),
            _dumps(list(record.input_items)), self.instance,
        )
        await self._call(lambda conn: conn.execute(
            f"INSERT INTO responses ({_INSERT_COLUMNS}, instance) "
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", params))

    async def finish(self, response_id: str, response: Mapping[str, Any],
                     events: Sequence[Mapping[str, Any]] = (), *,
                     append: ConversationAppend | None = None) -> bool:
        status = response.get("status")
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"response {response_id}: finish() needs a terminal status, "
                             f"got {status!r}")
        params = (status, _dumps(response), len(events), response_id, list(_TERMINAL))
        log = [(response_id, int(event["sequence_number"]), _dumps(event)) for event in events]

        def work(conn: psycopg.Connection[Any]) -> bool:
            # The condition is the point: whichever of cancel (from any replica) and the
            # engine's result is written first wins; the row lock orders them.
            written = conn.execute(
                "UPDATE responses SET status = %s, response = %s, event_count = %s "
                "WHERE id = %s AND NOT (status = ANY(%s))", params).rowcount == 1
            if written:
                # The log is what is given: events published while the response ran that
                # it leaves out (heartbeats, the part of a log cut past its bound) go.
                conn.execute(
                    "DELETE FROM response_events WHERE response_id = %s AND NOT "
                    "(sequence_number = ANY(%s))",
                    (response_id, [number for _, number, _ in log]))
            if written and log:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO response_events (response_id, sequence_number, event) "
                        "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", log)
            if written and append is not None:
                conversations.append_items(conn, append, 0, _dumps)
            if written:  # followers on every replica look again, once this is committed
                conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, response_id))
            return written

        # One transaction: the final object, its log and the turn's items land together.
        return await self._call(work, transaction=True)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        return await self._call(lambda conn: _get_sync(conn, response_id, owner))

    async def input_items(self, response_id: str, owner: str) -> list[Item] | None:
        def work(conn: psycopg.Connection[Any]) -> list[Item] | None:
            row = conn.execute("SELECT input_items FROM responses WHERE id = %s AND owner = %s",
                               (response_id, owner)).fetchone()
            return None if row is None else list(json.loads(row[0]))

        return await self._call(work)

    async def events(self, response_id: str, owner: str, *, after: int, limit: int
                     ) -> list[Item] | None:
        def work(conn: psycopg.Connection[Any]) -> list[Item] | None:
            if conn.execute("SELECT 1 FROM responses WHERE id = %s AND owner = %s",
                            (response_id, owner)).fetchone() is None:
                return None
            rows = conn.execute(
                "SELECT event FROM response_events WHERE response_id = %s "
                "AND sequence_number > %s ORDER BY sequence_number LIMIT %s",
                (response_id, after, limit)).fetchall()
            return [json.loads(event) for (event,) in rows]

        return await self._call(work, transaction=True)

    async def delete(self, response_id: str, owner: str) -> bool:
        return await self._call(lambda conn: conn.execute(
            "DELETE FROM responses WHERE id = %s AND owner = %s",
            (response_id, owner)).rowcount == 1)

    # -- retention (runtime/retention.py) -----------------------------------------------

    async def expire(self, *, created_before: float, limit: int) -> int:
        # SKIP LOCKED: two replicas sweeping at once share the work instead of waiting.
        return await self._call(lambda conn: conn.execute(
            "DELETE FROM responses WHERE id IN (SELECT id FROM responses "
            "WHERE created_at < %s AND status = ANY(%s) ORDER BY created_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED)", (created_before, list(_TERMINAL), limit)).rowcount,
            transaction=True)

    async def trim(self, *, max_bytes_per_owner: int, limit: int) -> int:
        # Sizes are summed per sweep (no column keeps them): the UTF-8 bytes of the
        # object, the input items and the log, as the SQLite store counts them.
        def work(conn: psycopg.Connection[Any]) -> int:
            over = conn.execute(
                f"SELECT owner, sum(size) FROM ({_SIZES}) AS s GROUP BY owner "
                "HAVING sum(size) > %s", (max_bytes_per_owner,)).fetchall()
            doomed: list[str] = []
            for owner, total in over:
                for rid, size in conn.execute(
                        f"SELECT id, size FROM ({_SIZES} WHERE r.owner = %s AND "
                        "r.status = ANY(%s)) AS s ORDER BY created_at LIMIT %s",
                        (owner, list(_TERMINAL), limit - len(doomed))).fetchall():
                    if total <= max_bytes_per_owner:
                        break
                    doomed.append(rid)
                    total -= size
                if len(doomed) >= limit:
                    break
            if doomed:
                conn.execute("DELETE FROM responses WHERE id = ANY(%s)", (doomed,))
            return len(doomed)

        return await self._call(work, transaction=True)

    async def chain(self, response_id: str, owner: str) -> list[StoredResponse] | None:
        def work(conn: psycopg.Connection[Any]) -> list[StoredResponse] | None:
            # One snapshot for the whole walk: a concurrent delete on another replica
            # cannot show a half-deleted chain.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _chain_sync(conn, response_id, owner)

        return await self._call(work, transaction=True)

    # -- shared by replicas (base.SharedStore) ------------------------------------------

    async def publish_events(self, response_id: str, events: Sequence[Item]) -> None:
        rows = [(response_id, int(event["sequence_number"]), _dumps(event))
                for event in events if "sequence_number" in event]
        if not rows:
            return

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO response_events (response_id, sequence_number, event) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", rows)
            conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, response_id))

        await self._call(work, transaction=True)

    def changed(self, response_id: str) -> trio.Event:
        event = self._watchers.get(response_id)
        if event is None:
            event = self._watchers[response_id] = trio.Event()
        return event

    async def send_control(self, kind: str, response_id: str) -> None:
        await self._call(lambda conn: conn.execute(
            "SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, f"{kind}:{response_id}")))

    def on_control(self, handler: ControlHandler | None) -> None:
        self._control = handler

    async def call_replica(self, kind: str, response_id: str, payload: Mapping[str, Any],
                           *, wait_seconds: float) -> Mapping[str, Any] | None:
        def ask(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO replica_calls (response_id, kind, payload) VALUES (%s, %s, %s) "
                "RETURNING id", (response_id, kind, _dumps(dict(payload)))).fetchone()
            assert row is not None
            conn.execute("SELECT pg_notify(%s, %s)",
                         (CONTROL_CHANNEL, f"{kind}:{response_id}:{row[0]}"))
            return int(row[0])

        call_id = await self._call(ask, transaction=True)
        key = f"call:{call_id}"
        try:
            with trio.move_on_after(wait_seconds):
                while True:
                    changed = self.changed(key)
                    answer = await self._call(lambda conn: conn.execute(
                        "SELECT answer FROM replica_calls WHERE id = %s",
                        (call_id,)).fetchone())
                    if answer is None:  # the response was deleted
                        return None
                    if answer[0] is not None:
                        return dict(json.loads(answer[0]))
                    with trio.move_on_after(5.0):  # a guard against a lost notification
                        await changed.wait()
            return None
        finally:
            self._watchers.pop(key, None)
            with trio.CancelScope(shield=True):
                await self._call(lambda conn: conn.execute(
                    "DELETE FROM replica_calls WHERE id = %s", (call_id,)))

    async def call_payload(self, call_id: int) -> Mapping[str, Any] | None:
        row = await self._call(lambda conn: conn.execute(
            "SELECT payload FROM replica_calls WHERE id = %s", (call_id,)).fetchone())
        return None if row is None else dict(json.loads(row[0]))

    async def answer_call(self, call_id: int, answer: Mapping[str, Any]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute("UPDATE replica_calls SET answer = %s WHERE id = %s AND answer IS NULL",
                         (_dumps(dict(answer)), call_id))
            conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, f"call:{call_id}"))

        await self._call(work, transaction=True)

    def _dispatch(self, channel: str | None, payload: str) -> None:
        """A notification, on the Trio thread (postgres_notify.Listener)."""
        if channel is None:  # (re)connected: anything may have been missed
            watchers, self._watchers = self._watchers, {}
            for event in watchers.values():
                event.set()
        elif channel == EVENTS_CHANNEL:
            if payload in self._watchers:
                self._watchers.pop(payload).set()
        elif channel == CONTROL_CHANNEL and self._control is not None:
            kind, _, rest = payload.partition(":")
            response_id, _, call_id = rest.partition(":")
            self._control(kind, response_id, int(call_id or 0))

    # -- conversations (conversation_sql.py) -------------------------------------------

    async def create_conversation(self, conversation: StoredConversation,
                                  items: Sequence[Item] = ()) -> None:
        await self._call(lambda conn: conversations.create_conversation(
            conn, conversation, items, _dumps), transaction=True)

    async def get_conversation(self, conversation_id: str, owner: str
                               ) -> StoredConversation | None:
        return await self._call(lambda conn: conversations.get_conversation(
            conn, conversation_id, owner))

    async def update_conversation(self, conversation_id: str, owner: str,
                                  metadata: Mapping[str, str]) -> StoredConversation | None:
        return await self._call(lambda conn: conversations.update_conversation(
            conn, conversation_id, owner, metadata, _dumps), transaction=True)

    async def delete_conversation(self, conversation_id: str, owner: str) -> bool:
        return await self._call(lambda conn: conversations.delete_conversation(
            conn, conversation_id, owner), transaction=True)

    async def append_items(self, append: ConversationAppend, *, max_items: int = 0) -> bool:
        return await self._call(lambda conn: conversations.append_items(
            conn, append, max_items, _dumps), transaction=True)

    async def conversation_items(self, conversation_id: str, owner: str
                                 ) -> list[Item] | None:
        return await self._call(lambda conn: conversations.conversation_items(
            conn, conversation_id, owner), transaction=True)

    async def list_items(self, conversation_id: str, owner: str, *, after: str | None,
                         limit: int, descending: bool) -> ItemPage | None:
        return await self._call(lambda conn: conversations.list_items(
            conn, conversation_id, owner, after, limit, descending), transaction=True)

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> Item | None:
        return await self._call(lambda conn: conversations.get_item(
            conn, conversation_id, owner, item_id), transaction=True)

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool:
        return await self._call(lambda conn: conversations.delete_item(
            conn, conversation_id, owner, item_id), transaction=True)


def _get_sync(conn: psycopg.Connection[Any], response_id: str, owner: str, *,
              with_items: bool = False) -> StoredResponse | None:
    columns = f"{_ROW_COLUMNS}, input_items" if with_items else _ROW_COLUMNS
    row = conn.execute(f"SELECT {columns} FROM responses WHERE id = %s AND owner = %s",
                       (response_id, owner)).fetchone()
    if row is None:
        return None
    return _row_to_record(row[:8], row[8]) if with_items else _row_to_record(row)


def _chain_sync(conn: psycopg.Connection[Any], response_id: str, owner: str
                ) -> list[StoredResponse] | None:
    return walk_chain(lambda rid: _get_sync(conn, rid, owner, with_items=True), response_id)
