"""A finished background response's replay reads its stored log a page at a time
(issue 13, finding 2): no read loads the whole log, and the replay is the log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.fakes import read_all
from tests.support.events import check_stream, joined_text
from tests.support.service import open_service
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime import replay
from trio_responses.store.sqlite import SQLiteStore

OWNER = "owner-a"


class CountingStore(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pages: list[int] = []

    async def events(self, response_id: str, owner: str, *, after: int, limit: int
                     ) -> list[Any] | None:
        page = await super().events(response_id, owner, after=after, limit=limit)
        self.pages.append(len(page or ()))
        return page


async def test_a_replay_reads_the_log_in_pages(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "PAGE_EVENTS", 4)
    store = CountingStore(tmp_path / "s.sqlite3")
    words = " ".join(f"w{i}" for i in range(20))
    async with open_service(store) as (service, _):
        body = decode_create_request(json.dumps(
            {"model": "scripted", "input": words, "background": True}).encode())
        run = await service.create(body, owner=OWNER, stream=False)
        await run.done.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert service.registry.get(run.id) is None  # so follow() reads the store
        row = await store.get(run.id, OWNER)
        assert row is not None and row.event_count > 20

        reader, cursor = await service.follow(run.id, OWNER, None)
        frames = await read_all(reader, cursor)
        events = [f.event for f in frames if f.event is not None]
        check_stream(events, replay=True)
        assert joined_text(events) == f"You said: {words}"
        assert len(events) == row.event_count
        # Every read took one page of at most 4 events, and one more found the end.
        assert max(store.pages) == 4 and store.pages[-1] == 0
        assert len(store.pages) == -(-row.event_count // 4) + 1

        reader, cursor = await service.follow(run.id, OWNER, 6)
        rest = [f.event for f in await read_all(reader, cursor) if f.event is not None]
        assert rest == events[7:]
        assert [f.data for f in frames][7:] == [
            f.data for f in await read_all(*await service.follow(run.id, OWNER, 6))]
