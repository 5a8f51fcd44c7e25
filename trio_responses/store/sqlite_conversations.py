"""Conversations in SQLite: the SQL behind SQLiteStore's conversation methods.

Each function runs on the store's one connection, in the worker thread that
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

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .base import ConversationAppend, ConversationFull, ItemPage, StoredConversation, UnknownItem

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


def _row_to_conversation(row: tuple[Any, ...]) -> StoredConversation:
    cid, owner, created_at, metadata = row
    return StoredConversation(id=cid, owner=owner, created_at=created_at,
                              metadata=json.loads(metadata))


def get_conversation(conn: sqlite3.Connection, conversation_id: str, owner: str
                     ) -> StoredConversation | None:
    row = conn.execute(
        "SELECT id, owner, created_at, metadata FROM conversations WHERE id = ? AND owner = ?",
        (conversation_id, owner)).fetchone()
    return _row_to_conversation(row) if row is not None else None


def create_conversation(conn: sqlite3.Connection, conversation: StoredConversation,
                        items: Sequence[Mapping[str, Any]], dumps: Callable[[Any], str]
                        ) -> None:
    conn.execute("INSERT INTO conversations (id, owner, created_at, metadata) "
                 "VALUES (?, ?, ?, ?)",
                 (conversation.id, conversation.owner, conversation.created_at,
                  dumps(dict(conversation.metadata))))
    _insert_items(conn, conversation.id, 0, items, dumps)


def update_conversation(conn: sqlite3.Connection, conversation_id: str, owner: str,
                        metadata: Mapping[str, str], dumps: Callable[[Any], str]
                        ) -> StoredConversation | None:
    conn.execute("UPDATE conversations SET metadata = ? WHERE id = ? AND owner = ?",
                 (dumps(dict(metadata)), conversation_id, owner))
    return get_conversation(conn, conversation_id, owner)


def delete_conversation(conn: sqlite3.Connection, conversation_id: str, owner: str) -> bool:
    if get_conversation(conn, conversation_id, owner) is None:
        return False
    conn.execute("DELETE FROM conversation_items WHERE conversation_id = ?", (conversation_id,))
    conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
    return True


def append_items(conn: sqlite3.Connection, append: ConversationAppend, max_items: int,
                 dumps: Callable[[Any], str]) -> bool:
    """Inside the caller's write transaction."""
    if get_conversation(conn, append.conversation_id, append.owner) is None:
        return False
    count, last = conn.execute(
        "SELECT count(*), max(position) FROM conversation_items WHERE conversation_id = ?",
        (append.conversation_id,)).fetchone()
    if max_items and count + len(append.items) > max_items:
        raise ConversationFull(count, max_items)
    _insert_items(conn, append.conversation_id, 0 if last is None else last + 1,
                  append.items, dumps)
    return True


def _insert_items(conn: sqlite3.Connection, conversation_id: str, first: int,
                  items: Sequence[Mapping[str, Any]], dumps: Callable[[Any], str]) -> None:
    conn.executemany(
        "INSERT INTO conversation_items (conversation_id, position, item_id, item) "
        "VALUES (?, ?, ?, ?)",
        [(conversation_id, first + offset, item["id"], dumps(dict(item)))
         for offset, item in enumerate(items)])


def conversation_items(conn: sqlite3.Connection, conversation_id: str, owner: str
                       ) -> list[Mapping[str, Any]] | None:
    if get_conversation(conn, conversation_id, owner) is None:
        return None
    return [json.loads(item) for (item,) in conn.execute(
        "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY position",
        (conversation_id,))]


def _position(conn: sqlite3.Connection, conversation_id: str, item_id: str) -> int | None:
    row = conn.execute(
        "SELECT min(position) FROM conversation_items WHERE conversation_id = ? AND item_id = ?",
        (conversation_id, item_id)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def list_items(conn: sqlite3.Connection, conversation_id: str, owner: str, after: str | None,
               limit: int, descending: bool) -> ItemPage | None:
    if get_conversation(conn, conversation_id, owner) is None:
        return None
    where = "conversation_id = ?"
    params: list[Any] = [conversation_id]
    if after is not None:
        position = _position(conn, conversation_id, after)
        if position is None:
            raise UnknownItem(after)
        where += " AND position < ?" if descending else " AND position > ?"
        params.append(position)
    order = "DESC" if descending else "ASC"
    rows = conn.execute(
        f"SELECT item FROM conversation_items WHERE {where} ORDER BY position {order} "
        "LIMIT ?", (*params, limit + 1)).fetchall()
    items = tuple(json.loads(item) for (item,) in rows[:limit])
    return ItemPage(items=items, has_more=len(rows) > limit)


def get_item(conn: sqlite3.Connection, conversation_id: str, owner: str, item_id: str
             ) -> Mapping[str, Any] | None:
    if get_conversation(conn, conversation_id, owner) is None:
        return None
    row = conn.execute(
        "SELECT item FROM conversation_items WHERE conversation_id = ? AND item_id = ? "
        "ORDER BY position LIMIT 1", (conversation_id, item_id)).fetchone()
    return json.loads(row[0]) if row is not None else None


def delete_item(conn: sqlite3.Connection, conversation_id: str, owner: str, item_id: str
                ) -> bool:
    if get_conversation(conn, conversation_id, owner) is None:
        return False
    cursor = conn.execute(
        "DELETE FROM conversation_items WHERE conversation_id = ? AND item_id = ?",
        (conversation_id, item_id))
    return cursor.rowcount > 0
