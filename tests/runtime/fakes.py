"""Test doubles for the runtime: a store that records its calls, an engine stream the
test drives by hand, and a factory for runs wired like ResponseService wires them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from tests.protocol.builders import new_builder
from tests.support.memory_store import MemoryStore
from trio_responses.engine.base import EngineDelta, EngineRequest, SamplingOptions
from trio_responses.protocol.events import Event, ResponseEvents
from trio_responses.runtime.buffer import EventBuffer, EventReader, Frame
from trio_responses.runtime.heartbeat import Heartbeats
from trio_responses.runtime.run import ResponseRun, RunOptions
from trio_responses.store.base import (
    TERMINAL_STATUSES,
    ConversationAppend,
    ResponseStore,
    StoredResponse,
)


class RecordingStore(MemoryStore):
    """The in-memory store (no threads: safe under MockClock autojump), with every
    ``finish`` call recorded, an optional delay on it, and the start-up sweep."""

    def __init__(self, *, finish_delay: float = 0.0) -> None:
        super().__init__()
        self.finishes: list[tuple[str, str, bool]] = []  # (id, status, written)
        self.finish_delay = finish_delay

    async def open(self) -> int:
        """As the protocol says: rows a dead process left running become failed."""
        await trio.lowlevel.checkpoint()
        running = [r for r in self.rows.values() if r.status not in TERMINAL_STATUSES]
        for row in running:
            self.rows[row.id] = dataclasses.replace(
                row, status="failed", response={**row.response, "status": "failed"})
        return len(running)

    async def finish(self, response_id: str, response: Mapping[str, Any],
                     events: Sequence[Mapping[str, Any]] = (), *,
                     append: ConversationAppend | None = None) -> bool:
        await trio.sleep(self.finish_delay)
        written = await super().finish(response_id, response, events, append=append)
        self.finishes.append((response_id, str(response["status"]), written))
        return written


def _check_protocol(store: RecordingStore) -> ResponseStore:
    return store  # mypy: RecordingStore satisfies the protocol


class HandStream:
    """An engine stream whose deltas the test sends (``send``), or whose failure it
    injects (``send`` an exception). ``shielded``: a delta already on its way is
    delivered even if the run is cancelled meanwhile (a bridge that has it in hand).
    ``before_delivery``: awaited before each delta is returned (a Sequencer step)."""

    def __init__(self, *, shielded: bool = False) -> None:
        self._send, self._receive = trio.open_memory_channel[EngineDelta | Exception](100)
        self.shielded = shielded
        self.before_delivery: Callable[[], Any] | None = None
        self.finished = False
        self.aborts = 0
        self.closes = 0

    def send(self, item: EngineDelta | Exception) -> None:
        self._send.send_nowait(item)

    def end_without_finish(self) -> None:
        self._send.close()

    def __aiter__(self) -> HandStream:
        return self

    async def __anext__(self) -> EngineDelta:
        if self.finished:
            raise StopAsyncIteration
        with trio.CancelScope(shield=self.shielded):
            try:
                item = await self._receive.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            if self.before_delivery is not None:
                await self.before_delivery()
        if isinstance(item, Exception):
            self.finished = True
            raise item
        if item.finish_reason is not None:
            self.finished = True
        return item

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self.closes += 1
        if not self.finished:
            self.aborts += 1
            self.finished = True


def engine_request(text: str, *, request_id: str = "resp_test",
                   max_tokens: int = 1000) -> EngineRequest:
    return EngineRequest(request_id=request_id,
                         messages=({"role": "user", "content": text},),
                         sampling=SamplingOptions(max_tokens=max_tokens))


def make_run(
    stream: Any,
    *,
    builder: ResponseEvents | None = None,
    store: RecordingStore | None = None,
    background: bool = False,
    ping_interval: float = 0.0,
    ping_events: bool = False,
    compatibility_mode: bool = False,
    buffer: EventBuffer | None = None,
    events: list[tuple[float, Event]] | None = None,
    heartbeats: Heartbeats | None = None,
) -> ResponseRun:
    """A run as ResponseService.create makes one: created events already in the buffer,
    the row already in the store. ``events`` collects (virtual time, event) pairs."""
    builder = builder or new_builder(background=background)
    if buffer is None:
        buffer = EventBuffer(keep_log=True)
    if store is not None:
        response = builder.response
        store.rows[response["id"]] = StoredResponse(
            id=response["id"], owner="", status=response["status"],
            background=response["background"], previous_response_id=None,
            created_at=response["created_at"], response=dict(response), input_items=())
    for event, data in builder.created():
        buffer.append(Frame(event, data))
        if events is not None:
            events.append((trio.current_time(), event))

    def observe(_: ResponseRun, event: Event) -> None:
        if events is not None:
            events.append((trio.current_time(), event))

    options = RunOptions(ping_interval=ping_interval, ping_events=ping_events,
                         compatibility_mode=compatibility_mode)
    return ResponseRun(builder, stream, buffer, options, clock=lambda: 1700000000.0,
                       store=store, on_event=observe, heartbeats=heartbeats)


async def read_all(buffer: EventReader, cursor: int = 0, *, primary: bool = False,
                   times: list[float] | None = None) -> list[Frame]:
    """Every frame from ``cursor`` until the buffer closes; ``times`` gets each frame's
    arrival time."""
    frames: list[Frame] = []
    while True:
        batch, cursor = await buffer.read(cursor, primary=primary)
        if not batch:
            return frames
        frames.extend(batch)
        if times is not None:
            times.extend(trio.current_time() for _ in batch)


def delta(text: str, *, finish: bool = False, n: int = 1) -> EngineDelta:
    return EngineDelta(text=text, finish_reason="stop" if finish else None, prompt_tokens=4,
                       output_tokens=n)
