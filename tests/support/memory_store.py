"""A store in memory, implementing the store protocol, for in-process tests (no threads,
so MockClock's autojump stays safe). tests/store/ runs the conversation suite against it
and SQLiteStore alike, so it keeps to the protocol's semantics."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from trio_responses.store.base import (
    TERMINAL_STATUSES,
    ConversationAppend,
    ConversationFull,
    Item,
    ItemPage,
    StoredConversation,
    StoredResponse,
    UnknownItem,
)


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredResponse] = {}
        self.conversations: dict[str, StoredConversation] = {}
        self.items: dict[str, list[Item]] = {}
        # Each response's stored event log, apart from its row as the protocol has it.
        self.event_logs: dict[str, list[Item]] = {}

    async def open(self) -> int:
        await trio.lowlevel.checkpoint()
        return 0

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    async def create(self, record: StoredResponse) -> None:
        await trio.lowlevel.checkpoint()
        # A copy, as a real store's row is: the run keeps changing its response object.
        self.rows[record.id] = dataclasses.replace(copy.deepcopy(record), event_count=0)

    async def finish(self, response_id: str, response: Mapping[str, Any],
                     events: Sequence[Mapping[str, Any]] = (), *,
                     append: ConversationAppend | None = None) -> bool:
        await trio.lowlevel.checkpoint()
        row = self.rows.get(response_id)
        if row is None or row.status in TERMINAL_STATUSES:
            return False
        self.rows[response_id] = dataclasses.replace(
            row, status=response["status"], response=copy.deepcopy(dict(response)),
            event_count=len(events))
        self.event_logs[response_id] = copy.deepcopy(list(events))
        if append is not None:
            self._append(append, 0)
        return True

    def _row(self, response_id: str, owner: str) -> StoredResponse | None:
        row = self.rows.get(response_id)
        return row if row is not None and row.owner == owner else None

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        await trio.lowlevel.checkpoint()
        row = self._row(response_id, owner)
        return None if row is None else dataclasses.replace(row, input_items=())

    async def input_items(self, response_id: str, owner: str) -> list[Item] | None:
        await trio.lowlevel.checkpoint()
        row = self._row(response_id, owner)
        return None if row is None else copy.deepcopy(list(row.input_items))

    async def events(self, response_id: str, owner: str, *, after: int, limit: int
                     ) -> list[Item] | None:
        await trio.lowlevel.checkpoint()
        if self._row(response_id, owner) is None:
            return None
        log = self.event_logs.get(response_id, [])
        return copy.deepcopy([e for e in log if e["sequence_number"] > after][:limit])

    def _size(self, row: StoredResponse) -> int:
        def size(value: Any) -> int:
            return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        return (size(row.response) + size(list(row.input_items))
                + sum(size(event) for event in self.event_logs.get(row.id, ())))

    def _drop(self, response_id: str) -> None:
        self.rows.pop(response_id, None)
        self.event_logs.pop(response_id, None)

    async def expire(self, *, created_before: float, limit: int) -> int:
        await trio.lowlevel.checkpoint()
        doomed = sorted((r for r in self.rows.values() if r.created_at < created_before
                         and r.status in TERMINAL_STATUSES), key=lambda r: r.created_at)
        for row in doomed[:limit]:
            self._drop(row.id)
        return len(doomed[:limit])

    async def trim(self, *, max_bytes_per_owner: int, limit: int) -> int:
        await trio.lowlevel.checkpoint()
        deleted = 0
        for owner in sorted({r.owner for r in self.rows.values()}):
            rows = sorted((r for r in self.rows.values() if r.owner == owner),
                          key=lambda r: r.created_at)
            total = sum(self._size(r) for r in rows)
            for row in rows:
                if total <= max_bytes_per_owner or deleted >= limit:
                    break
                if row.status in TERMINAL_STATUSES:
                    total -= self._size(row)
                    self._drop(row.id)
                    deleted += 1
        return deleted

    async def delete(self, response_id: str, owner: str) -> bool:
        if await self.get(response_id, owner) is None:
            return False
        self.event_logs.pop(response_id, None)
        return self.rows.pop(response_id, None) is not None

    async def chain(self, response_id: str, owner: str) -> list[StoredResponse] | None:
        chain: list[StoredResponse] = []
        current: str | None = response_id
        while current is not None:
            await trio.lowlevel.checkpoint()
            row = self._row(current, owner)
            if row is None:
                return None
            chain.append(row)
            current = row.previous_response_id
        return chain[::-1]

    # -- conversations ------------------------------------------------------------------

    def _conversation(self, conversation_id: str, owner: str) -> StoredConversation | None:
        conversation = self.conversations.get(conversation_id)
        return conversation if conversation is not None and conversation.owner == owner \
            else None

    async def create_conversation(self, conversation: StoredConversation,
                                  items: Sequence[Item] = ()) -> None:
        await trio.lowlevel.checkpoint()
        self.conversations[conversation.id] = copy.deepcopy(conversation)
        self.items[conversation.id] = copy.deepcopy(list(items))

    async def get_conversation(self, conversation_id: str, owner: str
                               ) -> StoredConversation | None:
        await trio.lowlevel.checkpoint()
        return self._conversation(conversation_id, owner)

    async def update_conversation(self, conversation_id: str, owner: str,
                                  metadata: Mapping[str, str]) -> StoredConversation | None:
        conversation = await self.get_conversation(conversation_id, owner)
        if conversation is None:
            return None
        updated = dataclasses.replace(conversation, metadata=dict(metadata))
        self.conversations[conversation_id] = updated
        return updated

    async def delete_conversation(self, conversation_id: str, owner: str) -> bool:
        if await self.get_conversation(conversation_id, owner) is None:
            return False
        del self.conversations[conversation_id], self.items[conversation_id]
        return True

    def _append(self, append: ConversationAppend, max_items: int) -> bool:
        if self._conversation(append.conversation_id, append.owner) is None:
            return False
        items = self.items[append.conversation_id]
        if max_items and len(items) + len(append.items) > max_items:
            raise ConversationFull(len(items), max_items)
        items.extend(copy.deepcopy(list(append.items)))
        return True

    async def append_items(self, append: ConversationAppend, *, max_items: int = 0) -> bool:
        await trio.lowlevel.checkpoint()
        return self._append(append, max_items)

    async def conversation_items(self, conversation_id: str, owner: str
                                 ) -> list[Item] | None:
        if await self.get_conversation(conversation_id, owner) is None:
            return None
        return copy.deepcopy(self.items[conversation_id])

    async def list_items(self, conversation_id: str, owner: str, *, after: str | None,
                         limit: int, descending: bool) -> ItemPage | None:
        items = await self.conversation_items(conversation_id, owner)
        if items is None:
            return None
        if descending:
            items.reverse()
        if after is not None:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise UnknownItem(after)
            items = items[ids.index(after) + 1:]
        return ItemPage(items=tuple(items[:limit]), has_more=len(items) > limit)

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> Item | None:
        items = await self.conversation_items(conversation_id, owner)
        return next((item for item in items or () if item["id"] == item_id), None)

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool:
        if await self.get_conversation(conversation_id, owner) is None:
            return False
        items = self.items[conversation_id]
        kept = [item for item in items if item["id"] != item_id]
        self.items[conversation_id] = kept
        return len(kept) < len(items)
