"""Conversations in PostgreSQL: the SQL behind PostgresStore's conversation methods.

The same tables and rules as ``sqlite_conversations.py``; each function runs inside the
caller's transaction on one pooled connection. Replicas append to one conversation at
once, so an append locks the conversation's row (``FOR UPDATE``) before it reads the
last position: appends are serialized per conversation, and positions never collide.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg

from .base import ConversationAppend, ConversationFull, ItemPage, StoredConversation, UnknownItem

Dumps = Callable[[Any], str]


def _row_to_conversation(row: tuple[Any, ...]) -> StoredConversation:
    cid, owner, created_at, metadata = row
    return StoredConversation(id=cid, owner=owner, created_at=int(created_at),
                              metadata=json.loads(metadata))


def get_conversation(conn: psycopg.Connection[Any], conversation_id: str, owner: str, *,
                     lock: bool = False) -> StoredConversation | None:
    row = conn.execute(
        "SELECT id, owner, created_at, metadata FROM conversations WHERE id = %s AND owner = %s"
        + (" FOR UPDATE" if lock else ""), (conversation_id, owner)).fetchone()
    return _row_to_conversation(row) if row is not None else None


def create_conversation(conn: psycopg.Connection[Any], conversation: StoredConversation,
                        items: Sequence[Mapping[str, Any]], dumps: Dumps) -> None:
    conn.execute("INSERT INTO conversations (id, owner, created_at, metadata) "
                 "VALUES (%s, %s, %s, %s)",
                 (conversation.id, conversation.owner, conversation.created_at,
                  dumps(dict(conversation.metadata))))
    _insert_items(conn, conversation.id, 0, items, dumps)


def update_conversation(conn: psycopg.Connection[Any], conversation_id: str, owner: str,
                        metadata: Mapping[str, str], dumps: Dumps) -> StoredConversation | None:
    conn.execute("UPDATE conversations SET metadata = %s WHERE id = %s AND owner = %s",
                 (dumps(dict(metadata)), conversation_id, owner))
    return get_conversation(conn, conversation_id, owner)


def delete_conversation(conn: psycopg.Connection[Any], conversation_id: str, owner: str
                        ) -> bool:
    # Items go with it (ON DELETE CASCADE).
    cursor = conn.execute("DELETE FROM conversations WHERE id = %s AND owner = %s",
                          (conversation_id, owner))
    return cursor.rowcount == 1


def append_items(conn: psycopg.Connection[Any], append: ConversationAppend, max_items: int,
                 dumps: Dumps) -> bool:
    """Inside the caller's transaction."""
    if get_conversation(conn, append.conversation_id, append.owner, lock=True) is None:
        return False
    row = conn.execute(
        "SELECT count(*), max(position) FROM conversation_items WHERE conversation_id = %s",
        (append.conversation_id,)).fetchone()
    assert row is not None
    count, last = row
    if max_items and count + len(append.items) > max_items:
        raise ConversationFull(count, max_items)
    _insert_items(conn, append.conversation_id, 0 if last is None else last + 1,
                  append.items, dumps)
    return True


def _insert_items(conn: psycopg.Connection[Any], conversation_id: str, first: int,
                  items: Sequence[Mapping[str, Any]], dumps: Dumps) -> None:
    if not items:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO conversation_items (conversation_id, position, item_id, item) "
            "VALUES (%s, %s, %s, %s)",
            [(conversation_id, first + offset, item["id"], dumps(dict(item)))
             for offset, item in enumerate(items)])


def conversation_items(conn: psycopg.Connection[Any], conversation_id: str, owner: str
                       ) -> list[Mapping[str, Any]] | None:
    if get_conversation(conn, conversation_id, owner) is None:
        return None
    return [json.loads(item) for (item,) in conn.execute(
        "SELECT item FROM conversation_items WHERE conversation_id = %s ORDER BY position",
        (conversation_id,))]


def _position(conn: psycopg.Connection[Any], conversation_id: str, item_id: str) -> int | None:
    row = conn.execute(
        "SELECT min(position) FROM conversation_items "
        "WHERE conversation_id = %s AND item_id = %s", (conversation_id, item_id)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def list_items(conn: psycopg.Connection[Any], conversation_id: str, owner: str,
               after: str | None, limit: int, descending: bool) -> ItemPage | None:
    if get_conversation(conn, conversation_id, owner) is None:
        return None
    where = "conversation_id = %s"
    params: list[Any] = [conversation_id]
    if after is not None:
        position = _position(conn, conversation_id, after)
        if position is None:
            raise UnknownItem(after)
        where += " AND position < %s" if descending else " AND position > %s"
        params.append(position)
    order = "DESC" if descending else "ASC"
    rows = conn.execute(
        f"SELECT item FROM conversation_items WHERE {where} ORDER BY position {order} "
        "LIMIT %s", (*params, limit + 1)).fetchall()
    items = tuple(json.loads(item) for (item,) in rows[:limit])
    return ItemPage(items=items, has_more=len(rows) > limit)


def get_item(conn: psycopg.Connection[Any], conversation_id: str, owner: str, item_id: str
             ) -> Mapping[str, Any] | None:
    if get_conversation(conn, conversation_id, owner) is None:
        return None
    row = conn.execute(
        "SELECT item FROM conversation_items WHERE conversation_id = %s AND item_id = %s "
        "ORDER BY position LIMIT 1", (conversation_id, item_id)).fetchone()
    return json.loads(row[0]) if row is not None else None


def delete_item(conn: psycopg.Connection[Any], conversation_id: str, owner: str, item_id: str
                ) -> bool:
    if get_conversation(conn, conversation_id, owner) is None:
        return False
    cursor = conn.execute(
        "DELETE FROM conversation_items WHERE conversation_id = %s AND item_id = %s",
        (conversation_id, item_id))
    return cursor.rowcount > 0
