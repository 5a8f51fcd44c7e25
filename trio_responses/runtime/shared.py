"""Live work across replicas (issue 16), on a store they share (``store.base.SharedStore``).

A background response runs on the replica that created it. There,
:func:`publish_events` follows the run's buffer like any reader and saves its events to
the store in batches (one transaction per batch, whatever came while the last one was
written, at most every :data:`PUBLISH_INTERVAL`), each commit waking the followers.

On any other replica, :class:`SharedLog` follows it: it reads the saved events after its
cursor (a sequence number), and when there are none yet waits for the store's
notification — taken before the read, so an event committed in between is not missed —
never polling. The cursor only moves forward by sequence number, so there is no gap and
no duplicate. Once the row is terminal its whole log is saved (``finish`` writes it in the
same transaction), so the follower reads to the end and stops; a response whose replica
died before it wrote a terminal event gets one made from the saved object.

:func:`live_response` is what a ``GET`` on another replica answers while it runs: the
saved object with the saved events folded in (``protocol/snapshot.py``), so it shows
``in_progress`` and the output so far, as the running replica's own ``GET`` does.

:func:`wait_terminal` is what a cancel from another replica waits with, after it sent the
``cancel`` control message to the replica running the response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from ..errors import APIError, Conflict, InvalidRequest
from ..protocol.events import replay_without_log
from ..protocol.machine import TERMINAL_EVENTS
from ..protocol.snapshot import fold_events
from ..protocol.sse import frame
from ..store.base import TERMINAL_STATUSES, ResponseStore, SharedStore, StoredResponse
from .buffer import EventBuffer, Frame
from .replay import PAGE_EVENTS
from .run import ResponseRun

log = logging.getLogger("trio_responses")

# The most a follower on another replica lags for batching's sake.
PUBLISH_INTERVAL = 0.02
# How long a cancel from another replica waits for the running replica to save it.
CANCEL_WAIT = 30.0
# How long tool outputs posted on another replica wait for the running one's answer.
TOOL_OUTPUTS_WAIT = 10.0
# A follower re-reads after this long without a notification: a guard against a lost
# notification (the listening connection dropped), not the way it learns of new events.
SAFETY_RECHECK = 5.0


async def publish_events(store: SharedStore, response_id: str, buffer: EventBuffer) -> None:
    """Save the run's events as they come, until its buffer closes."""
    reader = buffer.after(-1)
    cursor = 0
    try:
        while True:
            frames, cursor = await reader.read(cursor)
            if not frames:
                return
            events = [f.event for f in frames if f.event is not None]
            if buffer.log_cut:
                # Past --max-background-log-bytes the saved log is bounded as the run's
                # is: followers elsewhere wait for the final events (buffer.py).
                events = [e for e in events if e["type"] in TERMINAL_EVENTS]
            await store.publish_events(response_id, events)
            await trio.sleep(PUBLISH_INTERVAL)
    except Exception as exc:  # deleted meanwhile, the database away: the run goes on
        log.warning("publishing the events of %s stopped: %s", response_id, exc)


class SharedLog:
    """An :class:`~.buffer.EventReader` following a response that runs on another
    replica; its cursor is a sequence number (start it at ``starting_after`` or -1)."""

    def __init__(self, store: ResponseStore, shared: SharedStore, response_id: str,
                 owner: str, *, read_slot: Callable[[], AbstractAsyncContextManager[None]]
                 ) -> None:
        self._store = store
        self._shared = shared
        self._id = response_id
        self._owner = owner
        self._read_slot = read_slot
        self._ended = False  # the row is terminal: what is saved is all there will be
        self._final: Mapping[str, Any] | None = None  # its object, then
        self._terminal_sent = False

    async def read(self, cursor: int, *, primary: bool = False) -> tuple[list[Frame], int]:
        try:
            return await self._read(cursor)
        except RuntimeError:
            # This replica's store closed (a drain): end here; the response runs on, and
            # the client resumes on another replica with starting_after.
            return [], cursor

    async def _read(self, cursor: int) -> tuple[list[Frame], int]:
        while True:
            changed = self._shared.changed(self._id)
            async with self._read_slot():
                page = await self._store.events(self._id, self._owner, after=cursor,
                                                limit=PAGE_EVENTS)
            if page:
                if any(event.get("type") in TERMINAL_EVENTS for event in page):
                    self._terminal_sent = True
                frames = [Frame(dict(event), frame(event)) for event in page]
                return frames, int(page[-1]["sequence_number"])
            if page is None or self._ended:  # deleted, or everything was read
                return await self._end(cursor)
            async with self._read_slot():
                record = await self._store.get(self._id, self._owner)
            if record is None:
                return [], cursor
            if record.status in TERMINAL_STATUSES:
                self._ended = True  # one more read: the final log came with the status
                self._final = record.response
                continue
            with trio.move_on_after(SAFETY_RECHECK):
                await changed.wait()

    async def _end(self, cursor: int) -> tuple[list[Frame], int]:
        final = self._final
        if self._terminal_sent or final is None:
            return [], cursor
        # Its replica died mid-way (the lease sweep saved it failed): end the stream well.
        self._terminal_sent = True
        event = dict(replay_without_log(final)[-1], sequence_number=cursor + 1)
        return [Frame(event, frame(event))], cursor + 1


async def answer_tool_outputs(store: SharedStore, run: ResponseRun, call_id: int) -> None:
    """On the replica running ``run``: post the tool outputs another replica received,
    and answer it with the response as it is now, or the error the post raised."""
    payload = await store.call_payload(call_id)
    if payload is None:
        return
    answer: dict[str, Any]
    try:
        if payload.get("owner") != run.owner or run.tools is None:
            raise Conflict("This response is not waiting for tool outputs.",
                           param="tool_outputs", code="not_waiting_for_tool_outputs")
        run.tools.post(list(payload["outputs"]))
        answer = {"response": run.response}
    except APIError as exc:
        answer = {"error": {"status": exc.status, "message": exc.message,
                            "param": exc.param, "code": exc.code, "kind": type(exc).__name__}}
    await store.answer_call(call_id, answer)


def answer_of(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """The running replica's answer to posted tool outputs: the response, or its error
    raised again here."""
    if "response" in answer:
        return dict(answer["response"])
    error = answer["error"]
    kind = {"Conflict": Conflict, "InvalidRequest": InvalidRequest}.get(error["kind"], Conflict)
    raise kind(error["message"], param=error["param"], code=error["code"])


async def wait_terminal(store: ResponseStore, shared: SharedStore, response_id: str,
                        owner: str, wait_seconds: float) -> Mapping[str, Any] | None:
    """The response's object once it is terminal (woken by the store), or as it is after
    ``wait_seconds``; None if it was deleted."""
    with trio.move_on_after(wait_seconds):
        while True:
            changed = shared.changed(response_id)
            record = await store.get(response_id, owner)
            if record is None or record.status in TERMINAL_STATUSES:
                return None if record is None else record.response
            with trio.move_on_after(SAFETY_RECHECK):
                await changed.wait()
    record = await store.get(response_id, owner)
    return None if record is None else record.response


async def live_response(store: ResponseStore, record: StoredResponse,
                        read_slot: Callable[[], AbstractAsyncContextManager[None]]
                        ) -> Mapping[str, Any]:
    """A response running on another replica as its saved events show it now (the
    stored object where none are saved: a foreground response, or one not begun)."""
    events: list[Mapping[str, Any]] = []
    cursor = -1
    while True:
        async with read_slot():
            page = await store.events(record.id, record.owner, after=cursor,
                                      limit=PAGE_EVENTS)
        if not page:
            break
        events.extend(page)
        cursor = int(page[-1]["sequence_number"])
        if len(page) < PAGE_EVENTS:
            break
    return fold_events(record.response, events) if events else record.response
