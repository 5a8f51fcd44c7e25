"""RELIABILITY row 17, in process: any sequence of create / get / cancel / delete /
disconnect / follow / restart, with virtual time passing between them. Statuses only move
forward, a terminal status is final (and its object never changes), cancel is
idempotent, a resumed stream continues in order after the cursor, and nothing is left
running or aborted twice."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime.fakes import RecordingStore
from tests.support.events import check_stream
from trio_responses.config import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.errors import InvalidRequest, NotFound
from trio_responses.protocol.events import Event
from trio_responses.protocol.ids import counting_ids
from trio_responses.protocol.machine import TERMINAL_EVENTS
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime.registry import Registry
from trio_responses.runtime.run import ResponseRun
from trio_responses.runtime.service import ResponseService
from trio_responses.runtime.service_config import ServiceConfig
from trio_responses.store.base import TERMINAL_STATUSES

RANK = {"queued": 0, "in_progress": 1, **{status: 2 for status in TERMINAL_STATUSES}}
INPUTS = {"fast": "a b c", "stall": "[[stall]]", "fail": "[[fail]]"}


@dataclass(frozen=True)
class Create:
    background: bool
    kind: str


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Act:
    what: str  # get | cancel | delete | disconnect | follow
    index: int
    after: int = 0


@dataclass(frozen=True)
class Restart:
    pass


creates = st.builds(Create, st.booleans(), st.sampled_from(sorted(INPUTS)))
waits = st.builds(Wait, st.sampled_from([0.0, 0.5, 1.0, 2.5, 10.0]))
acts = st.builds(Act, st.sampled_from(["get", "cancel", "cancel", "delete", "disconnect",
                                       "follow", "follow"]),
                 st.integers(0, 7), st.integers(-1, 8))
restarts = st.integers(0, 3).filter(lambda n: n == 0).map(lambda _: Restart())
operations = st.tuples(
    st.lists(creates, min_size=1, max_size=4),
    # Acts twice as likely as the rest; a restart ends every live run, so it is rarest.
    st.lists(st.one_of(creates, waits, acts, acts, restarts), max_size=20),
).map(lambda parts: [*parts[0], *parts[1]])


@dataclass
class Tracked:
    id: str
    background: bool
    status: str = "queued"
    final: dict[str, Any] | None = None
    cancelled_as: dict[str, Any] | None = None
    deleted: bool = False
    events: list[Event] = field(default_factory=list)

    def saw(self, response: Any) -> None:
        """A status observed by a client: never backwards; terminal objects never change."""
        snapshot = json.loads(json.dumps(response))
        status = snapshot["status"]
        assert RANK[status] >= RANK[self.status], (self.status, status)
        if self.final is not None:
            assert snapshot == self.final
        if status in TERMINAL_STATUSES:
            self.final = snapshot
        self.status = status


class World:
    def __init__(self) -> None:
        self.store = RecordingStore()
        self.engine = ScriptedEngine(token_delay=1.0)
        self.ids = counting_ids()
        self.tracked: list[Tracked] = []
        self.by_id: dict[str, Tracked] = {}

    def observe(self, run: ResponseRun, event: Event) -> None:
        self.by_id[run.id].events.append(event)

    def pick(self, index: int) -> Tracked | None:
        return self.tracked[index % len(self.tracked)] if self.tracked else None

    async def act(self, service: ResponseService, op: Act) -> None:
        item = self.pick(op.index)
        if item is None:
            return
        if item.deleted:
            try:
                await service.retrieve(item.id, "")
            except NotFound:
                return
            raise AssertionError("a deleted response is still retrievable")
        if op.what == "get":
            item.saw(await service.retrieve(item.id, ""))
        elif op.what == "cancel":
            await self.cancel(service, item)
        elif op.what == "delete":
            await service.delete(item.id, "")
            item.deleted = True
            assert service.registry.get(item.id) is None
        elif op.what == "disconnect":
            run = service.registry.get(item.id)
            if run is not None and not item.background:
                ended = run.end("disconnect")
                await run.done.wait()
                item.saw(run.response)
                assert (item.status == "cancelled") == ended
        else:
            await self.follow(service, item, op.after)

    async def cancel(self, service: ResponseService, item: Tracked) -> None:
        try:
            result = json.loads(json.dumps(await service.cancel(item.id, "")))
        except InvalidRequest:
            assert not item.background
            return
        assert item.background and result["status"] in TERMINAL_STATUSES
        if item.cancelled_as is not None:
            assert result == item.cancelled_as  # cancelling twice: the same object
        item.cancelled_as = result
        item.saw(result)

    async def follow(self, service: ResponseService, item: Tracked, after: int) -> None:
        run = service.registry.get(item.id)
        if run is not None:
            # Only cursors a client can hold: events already sent (see
            # test_service.py::test_follow_from_a_cursor_beyond_the_live_end).
            after = min(after, run.builder.next_sequence - 1)
        try:
            buffer, cursor = await service.follow(item.id, "", after)
        except InvalidRequest:
            assert not item.background
            return
        got: list[Event] = []
        with trio.move_on_after(0.25):
            while True:
                frames, cursor = await buffer.read(cursor)
                if not frames:
                    break
                got.extend(f.event for f in frames if f.event is not None)
        numbers = [e["sequence_number"] for e in got]
        # In order, after the cursor; heartbeats sent before the reader joined (and in a
        # finished response's log) are left out, so numbers may skip.
        assert numbers == sorted(set(numbers)) and all(n > after for n in numbers)

    async def session(self, ops: list[Any]) -> list[Any]:
        """Serve until a Restart; returns the operations left."""
        await self.store.open()
        async with Registry.open() as registry:
            service = ResponseService(
                config=ServiceConfig.from_settings(
                    Settings(engine="scripted", responses_ping_interval_seconds=3)),
                engine=self.engine, store=self.store, registry=registry, ids=self.ids,
                clock=trio.current_time, observer=self.observe)
            while ops:
                op, ops = ops[0], ops[1:]
                if isinstance(op, Restart):
                    return ops
                if isinstance(op, Create):
                    body = {"model": "scripted", "input": INPUTS[op.kind],
                            "background": op.background}
                    request = decode_create_request(json.dumps(body).encode())
                    run = await service.create(request, owner="", stream=False)
                    item = Tracked(run.id, op.background)
                    self.tracked.append(item)
                    self.by_id[run.id] = item
                    item.saw(run.response)
                elif isinstance(op, Wait):
                    await trio.sleep(op.seconds)
                else:
                    await self.act(service, op)
        return []

    async def main(self, ops: list[Any]) -> None:
        await self.engine.start()
        while True:
            ops = await self.session(ops)
            # Every session ends with a drain: nothing is left running.
            assert self.engine.statistics().running == 0
            if not ops:
                break
        for item in self.tracked:
            terminals = [e for e in item.events if e["type"] in TERMINAL_EVENTS]
            assert len(terminals) == 1 and item.events[-1] is terminals[0]
            numbers = [e["sequence_number"] for e in item.events]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            if item.deleted:
                assert item.id not in self.store.rows
                continue
            row = self.store.rows[item.id]
            assert row.status in TERMINAL_STATUSES
            item.saw(row.response)
            assert terminals[0]["response"] == item.final
            if item.background:
                check_stream([dict(e) for e in self.store.event_logs[item.id]], replay=True)
        assert len(self.engine.aborted) == len(set(self.engine.aborted))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_any_lifecycle_keeps_its_promises(ops: list[Any]) -> None:
    world = World()
    trio.run(world.main, ops, clock=trio.testing.MockClock(autojump_threshold=0))
