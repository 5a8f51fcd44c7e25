"""The SQL behind the stores' conversation methods, written once for SQLite and PostgreSQL.

Both databases hold the same two tables (``conversations``: id, owner, created_at,
metadata JSON; ``conversation_items``: conversation_id, position, item_id, item JSON,
keyed by conversation and position, deleted with their conversation by ``ON DELETE
CASCADE``) and follow the same rules: positions only grow within a conversation (a
deleted item leaves a gap), every lookup is by conversation first, and a conversation is
found only with its owner. Each method runs inside the caller's transaction, on a
connection of the caller's (``sqlite3`` or ``psycopg``: both have ``execute`` returning a
cursor).

What differs is said by a :class:`ConversationSQL`: the parameter mark (``?`` /
``%s``; the statements here are written with ``?``), and how an append keeps two
writers from taking the same position. In SQLite the caller's ``BEGIN IMMEDIATE``
already serializes writers; in PostgreSQL replicas append at once, so an append locks the
conversation's row (``FOR UPDATE``) before it reads the last position.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import ConversationAppend, ConversationFull, ItemPage, StoredConversation, UnknownItem

Dumps = Callable[[Any], str]
Item = Mapping[str, Any]


@dataclass(frozen=True)
class ConversationSQL:
    # The database's parameter mark.
    mark: str = "?"
    # Appended to the conversation lookup an append makes first.
    append_lock: str = ""

    def _sql(self, statement: str) -> str:
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    def _run(self, conn: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self._sql(statement), tuple(params))

    def get_conversation(self, conn: Any, conversation_id: str, owner: str, *,
                         lock: bool = False) -> StoredConversation | None:
        row = self._run(conn, "SELECT id, owner, created_at, metadata FROM conversations "
                        "WHERE id = ? AND owner = ?" + (self.append_lock if lock else ""),
                        (conversation_id, owner)).fetchone()
        if row is None:
            return None
        cid, found_owner, created_at, metadata = row
        return StoredConversation(id=cid, owner=found_owner, created_at=int(created_at),
                                  metadata=json.loads(metadata))

    def create_conversation(self, conn: Any, conversation: StoredConversation,
                            items: Sequence[Item], dumps: Dumps) -> None:
        self._run(conn, "INSERT INTO conversations (id, owner, created_at, metadata) "
                  "VALUES (?, ?, ?, ?)",
                  (conversation.id, conversation.owner, conversation.created_at,
                   dumps(dict(conversation.metadata))))
        self._insert_items(conn, conversation.id, 0, items, dumps)

    def update_conversation(self, conn: Any, conversation_id: str, owner: str,
                            metadata: Mapping[str, str], dumps: Dumps
                            ) -> StoredConversation | None:
        self._run(conn, "UPDATE conversations SET metadata = ? WHERE id = ? AND owner = ?",
                  (dumps(dict(metadata)), conversation_id, owner))
        return self.get_conversation(conn, conversation_id, owner)

    def delete_conversation(self, conn: Any, conversation_id: str, owner: str) -> bool:
        # Its items go with it (ON DELETE CASCADE).
        cursor = self._run(conn, "DELETE FROM conversations WHERE id = ? AND owner = ?",
                           (conversation_id, owner))
        return bool(cursor.rowcount == 1)

    def append_items(self, conn: Any, append: ConversationAppend, max_items: int,
                     dumps: Dumps) -> bool:
        """Inside the caller's write transaction; False if the conversation is gone."""
        if self.get_conversation(conn, append.conversation_id, append.owner,
                                 lock=True) is None:
            return False
        count, last = self._run(
            conn, "SELECT count(*), max(position) FROM conversation_items "
            "WHERE conversation_id = ?", (append.conversation_id,)).fetchone()
        if max_items and count + len(append.items) > max_items:
            raise ConversationFull(count, max_items)
        self._insert_items(conn, append.conversation_id, 0 if last is None else last + 1,
                           append.items, dumps)
        return True

    def _insert_items(self, conn: Any, conversation_id: str, first: int,
                      items: Sequence[Item], dumps: Dumps) -> None:
        if not items:
            return
        cursor = conn.cursor()
        try:
            cursor.executemany(
                self._sql("INSERT INTO conversation_items "
                          "(conversation_id, position, item_id, item) VALUES (?, ?, ?, ?)"),
                [(conversation_id, first + offset, item["id"], dumps(dict(item)))
                 for offset, item in enumerate(items)])
        finally:
            cursor.close()

    def conversation_items(self, conn: Any, conversation_id: str, owner: str
                           ) -> list[Item] | None:
        if self.get_conversation(conn, conversation_id, owner) is None:
            return None
        rows = self._run(conn, "SELECT item FROM conversation_items "
                         "WHERE conversation_id = ? ORDER BY position",
                         (conversation_id,)).fetchall()
        return [json.loads(item) for (item,) in rows]

    def list_items(self, conn: Any, conversation_id: str, owner: str, after: str | None,
                   limit: int, descending: bool) -> ItemPage | None:
        if self.get_conversation(conn, conversation_id, owner) is None:
            return None
        where = "conversation_id = ?"
        params: list[Any] = [conversation_id]
        if after is not None:
            position = self._position(conn, conversation_id, after)
            if position is None:
                raise UnknownItem(after)
            where += " AND position < ?" if descending else " AND position > ?"
            params.append(position)
        order = "DESC" if descending else "ASC"
        rows = self._run(conn, f"SELECT item FROM conversation_items WHERE {where} "
                         f"ORDER BY position {order} LIMIT ?", (*params, limit + 1)).fetchall()
        items = tuple(json.loads(item) for (item,) in rows[:limit])
        return ItemPage(items=items, has_more=len(rows) > limit)

    def _position(self, conn: Any, conversation_id: str, item_id: str) -> int | None:
        row = self._run(conn, "SELECT min(position) FROM conversation_items "
                        "WHERE conversation_id = ? AND item_id = ?",
                        (conversation_id, item_id)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def get_item(self, conn: Any, conversation_id: str, owner: str, item_id: str
                 ) -> Item | None:
        if self.get_conversation(conn, conversation_id, owner) is None:
            return None
        row = self._run(conn, "SELECT item FROM conversation_items "
                        "WHERE conversation_id = ? AND item_id = ? ORDER BY position LIMIT 1",
                        (conversation_id, item_id)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def delete_item(self, conn: Any, conversation_id: str, owner: str, item_id: str
                    ) -> bool:
        if self.get_conversation(conn, conversation_id, owner) is None:
            return False
        cursor = self._run(conn, "DELETE FROM conversation_items "
                           "WHERE conversation_id = ? AND item_id = ?",
                           (conversation_id, item_id))
        return bool(cursor.rowcount > 0)
