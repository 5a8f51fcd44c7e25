"""A store in memory, implementing the store protocol, for in-process tests (no threads,
so MockClock's autojump stays safe)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from trio_responses.store.base import TERMINAL_STATUSES, StoredResponse


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredResponse] = {}

    async def open(self) -> int:
        await trio.lowlevel.checkpoint()
        return 0

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    async def create(self, record: StoredResponse) -> None:
        await trio.lowlevel.checkpoint()
        # A copy, as a real store's row is: the run keeps changing its response object.
        self.rows[record.id] = copy.deepcopy(record)

    async def finish(self, response_id: str, response: Mapping[str, Any],
                     events: Sequence[Mapping[str, Any]] = ()) -> bool:
        await trio.lowlevel.checkpoint()
        row = self.rows.get(response_id)
        if row is None or row.status in TERMINAL_STATUSES:
            return False
        self.rows[response_id] = dataclasses.replace(
            row, status=response["status"], response=copy.deepcopy(dict(response)),
            events=copy.deepcopy(tuple(events)))
        return True

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        await trio.lowlevel.checkpoint()
        row = self.rows.get(response_id)
        return row if row is not None and row.owner == owner else None

    async def delete(self, response_id: str, owner: str) -> bool:
        row = await self.get(response_id, owner)
        return row is not None and self.rows.pop(response_id, None) is not None

    async def chain(self, response_id: str, owner: str) -> list[StoredResponse] | None:
        chain: list[StoredResponse] = []
        current: str | None = response_id
        while current is not None:
            row = await self.get(current, owner)
            if row is None:
                return None
            chain.append(row)
            current = row.previous_response_id
        return chain[::-1]
