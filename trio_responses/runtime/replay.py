"""StoredLog: a finished background response's events, read from the store a page at a
time (issue 13, finding 2).

A replay (``GET /v1/responses/{id}?stream=true`` after the run is gone) used to load the
whole log with the row and hold it in an EventBuffer: a 200 MB log took 30 s to its first
byte and blocked the event loop for many seconds. Here each read fetches one page of
events after the reader's cursor (the sequence number of the last event it was sent), in
one of the key's read slots, so a replay holds one page at a time and waits its turn
like any other read of its key.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from ..protocol.sse import frame
from ..store.base import ResponseStore
from .buffer import Frame

# Events per page: deltas are a few hundred bytes; a page of the largest events allowed
# (--max-stream-event-bytes) is still bounded by this count.
PAGE_EVENTS = 256


class StoredLog:
    """An :class:`~.buffer.EventReader` over the stored log. Its cursor is a sequence
    number: start it at ``starting_after`` (or -1 for everything)."""

    def __init__(self, store: ResponseStore, response_id: str, owner: str, *,
                 read_slot: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        self._store = store
        self._id = response_id
        self._owner = owner
        self._read_slot = read_slot

    async def read(self, cursor: int, *, primary: bool = False) -> tuple[list[Frame], int]:
        async with self._read_slot():
            page = await self._store.events(self._id, self._owner, after=cursor,
                                            limit=PAGE_EVENTS)
        if not page:  # the end (or the response was deleted meanwhile)
            return [], cursor
        frames = [Frame(dict(event), frame(event)) for event in page]
        return frames, int(page[-1]["sequence_number"])
