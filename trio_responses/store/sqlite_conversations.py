"""Conversations in SQLite: the schema, and the transactions SQLiteStore runs their SQL
(``conversation_sql.py``, shared with PostgreSQL) in.

Each function runs on a connection of the store's, in the worker thread that
:class:`~.sqlite.SQLiteStore` hands it to, and does its work in one transaction: a write
is all or nothing (an append of twenty items, or a response's whole turn, commits
together or not at all), a read sees one state of the file.

Tables (schema v3, :data:`~.sqlite.MIGRATIONS`): ``conversations`` (id, owner,
created_at, metadata JSON) and ``conversation_items`` (conversation_id, position,
item_id, item JSON), keyed by (conversation, position). Positions only grow within a
conversation; a deleted item leaves a gap. Every lookup is by conversation first, and a
conversation is found only with its owner.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_T = TypeVar("_T")

# Script 3 of sqlite.MIGRATIONS. (conversation_id, item_id) is indexed, not unique: a
# duplicate id can only come from two processes appending at once, and refusing it
# would fail a response's final write.
SCHEMA_V3 = """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE TABLE conversation_items (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (conversation_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX conversation_items_by_id ON conversation_items (conversation_id, item_id);
"""


@contextmanager
def transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[None]:
    """BEGIN IMMEDIATE (write: the write lock before anything is read) or BEGIN, then
    COMMIT, or ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")


def in_transaction(work: Callable[[sqlite3.Connection], _T], *, write: bool
                   ) -> Callable[[sqlite3.Connection], _T]:
    def run(conn: sqlite3.Connection) -> _T:
        with transaction(conn, write=write):
            return work(conn)

    return run

