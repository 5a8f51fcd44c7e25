"""Heartbeats under MockClock (RELIABILITY row 9): a ping after every ``ping_interval`` of
silence, exactly, in virtual time; none while tokens flow faster; SSE comments by
default, ``response.ping`` events for a run that asked for them; and a stream the SDK's
decoder reads without error."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
import trio
import trio.testing
from openai._streaming import SSEDecoder
from openai.types.responses import ResponseStreamEvent

from tests.protocol.builders import new_builder
from tests.runtime.fakes import RecordingStore, engine_request, make_run, read_all
from tests.support.events import check_stream
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.protocol.events import Emitted, Event, ResponseEvents
from trio_responses.protocol.ids import counting_ids
from trio_responses.protocol.sse import COMMENT_PING, DONE
from trio_responses.runtime.heartbeat import Heartbeats

ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


async def scripted(reply: str, *, token_delay: float) -> ScriptedEngine:
    engine = ScriptedEngine(reply=lambda _: reply, token_delay=token_delay)
    await engine.start()
    return engine


async def test_stalled_engine_gets_a_ping_every_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await scripted("first then [[stall]]", token_delay=0.25)
    stream = await engine.submit(engine_request("[[stall]]"))
    events: list[tuple[float, Event]] = []
    run = make_run(stream, ping_interval=5.0, ping_events=True, events=events)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await trio.sleep(31)
        assert run.end("cancel")
    await run.done.wait()

    pings = [t - start for t, e in events if e["type"] == "response.ping"]
    assert pings == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    check_stream([e for _, e in events])
    text_times = [t - start for t, e in events if e["type"] == "response.output_text.delta"]
    assert text_times == [0.0]  # the one token before the stall
    assert events[-1][1]["response"]["status"] == "cancelled"
    assert engine.aborted == ["resp_test"]

    # The (lenient) SDK decodes the whole stream, pings included, without error.
    wire = b"".join(frame.data for frame in run.buffer._frames) + DONE
    decoded = [sse for sse in SSEDecoder().iter_bytes(iter([wire])) if sse.data != "[DONE]"]
    assert [sse.json() for sse in decoded] == [e for _, e in events]
    for sse in decoded:
        if sse.event != "response.ping":
            ADAPTER.validate_python(sse.json())


async def test_no_ping_while_tokens_flow_faster_than_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await scripted(" ".join(f"w{i}" for i in range(40)), token_delay=0.75)
    events: list[tuple[float, Event]] = []
    run = make_run(await engine.submit(engine_request("go")), ping_interval=1.0,
                   ping_events=True, events=events)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
    assert trio.current_time() - start == 39 * 0.75
    assert [e for _, e in events if e["type"] == "response.ping"] == []
    assert events[-1][1]["type"] == "response.completed"


async def test_pings_fill_every_silence_between_slow_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await scripted("a b c d", token_delay=2.5)
    events: list[tuple[float, Event]] = []
    run = make_run(await engine.submit(engine_request("go")), ping_interval=1.0,
                   ping_events=True, events=events)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
    timeline = [(t - start, e["type"]) for t, e in events
                if e["type"] in ("response.ping", "response.output_text.delta")]
    expected: list[tuple[float, str]] = []
    for token_at in (0.0, 2.5, 5.0, 7.5):
        if token_at:
            expected += [(token_at - 1.5, "response.ping"), (token_at - 0.5, "response.ping")]
        expected.append((token_at, "response.output_text.delta"))
    assert timeline == expected
    check_stream([e for _, e in events])


@pytest.mark.parametrize("compatibility_mode", [False, True])
async def test_pings_are_comments_unless_asked_for_events(
    autojump_clock: trio.testing.MockClock, compatibility_mode: bool,
) -> None:
    engine = await scripted("first then [[stall]]", token_delay=0.25)
    stream = await engine.submit(engine_request("[[stall]]"))
    run = make_run(stream, ping_interval=4.0, compatibility_mode=compatibility_mode)
    times: list[float] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)

        async def reader() -> None:
            frames.extend(await read_all(run.buffer, times=times))

        frames: list[Any] = []
        nursery.start_soon(reader)
        await trio.sleep(13)
        run.end("cancel")

    comments = [t - start for t, f in zip(times, frames, strict=True) if f.event is None]
    assert comments == [4.0, 8.0, 12.0]
    assert all(f.data == COMMENT_PING for f in frames if f.event is None)
    events = [f.event for f in frames if f.event is not None]
    assert not [e for e in events if e["type"] == "response.ping"]
    check_stream(events)  # sequence numbers 0, 1, 2, ... with no gap for the comments
    assert events[-1]["sequence_number"] == len(events) - 1


async def test_interval_zero_disables_heartbeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = await scripted("first then [[stall]]", token_delay=0.25)
    events: list[tuple[float, Event]] = []
    run = make_run(await engine.submit(engine_request("[[stall]]")), ping_interval=0,
                   ping_events=True, events=events)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await trio.sleep(1000)
        run.end("cancel")
    assert [e for _, e in events if e["type"] == "response.ping"] == []
    # No comment frames either: every frame is an event.
    assert run.buffer.statistics().frames == len(run.buffer.events()) == len(events)


class CountingEvents(ResponseEvents):
    """Counts ping() calls made after the terminal event was built."""

    late_pings = 0

    def ping(self) -> list[Emitted]:
        if self.finished:
            self.late_pings += 1
        return super().ping()


@pytest.fixture
def fast_clock() -> trio.testing.MockClock:
    """Virtual time at 100x real time, without autojump: a task that spins instead of
    sleeping cannot stop this clock (it would stop an autojump clock, and hang the test)."""
    return trio.testing.MockClock(rate=100)


async def test_heartbeat_sleeps_while_the_final_object_is_saved(
    fast_clock: trio.testing.MockClock,
) -> None:
    """The final events are built, then the store write takes 3 s, then they are sent.
    Meanwhile the heartbeat must neither ping nor spin calling ping()."""
    store = RecordingStore(finish_delay=3.0)
    engine = await scripted("a b", token_delay=0.1)
    builder = CountingEvents(new_builder().response, counting_ids())
    events: list[tuple[float, Event]] = []
    run = make_run(await engine.submit(engine_request("go")), builder=builder, store=store,
                   ping_interval=1.0, ping_events=True, events=events)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
    assert events[-1][1]["type"] == "response.completed"
    assert store.finishes == [("resp_test", "completed", True)]
    assert [e for _, e in events if e["type"] == "response.ping"] == []
    assert builder.late_pings == 0


async def test_one_heartbeats_task_pings_every_run_on_its_own_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three stalled runs share the registry's one Heartbeats task: each is pinged after
    every interval of its own silence, counted from its own last event, whatever the
    others do; a run that ends leaves the schedule and the others go on."""
    heartbeats = Heartbeats()
    engine = await scripted("first then [[stall]]", token_delay=0.25)
    timelines: list[list[tuple[float, Event]]] = [[], [], []]
    runs = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeats.serve)
        start = trio.current_time()
        for i, (delay, interval) in enumerate(((0.0, 2.0), (0.5, 2.0), (1.25, 3.0))):
            await trio.sleep_until(start + delay)
            run = make_run(await engine.submit(engine_request("[[stall]]", request_id=f"r{i}")),
                           ping_interval=interval, ping_events=True, events=timelines[i],
                           heartbeats=heartbeats)
            runs.append(run)
            nursery.start_soon(run.run)
        await trio.sleep_until(start + 7.0)
        assert runs[0].end("cancel")
        await runs[0].done.wait()
        await trio.sleep_until(start + 11.0)
        for run in runs[1:]:
            assert run.end("cancel")
        for run in runs[1:]:
            await run.done.wait()
        assert len(heartbeats) == 0  # an ended run is let go of at once
        nursery.cancel_scope.cancel()

    def pings(events: list[tuple[float, Event]]) -> list[float]:
        return [t - start for t, e in events if e["type"] == "response.ping"]

    assert pings(timelines[0]) == [2.0, 4.0, 6.0]
    assert pings(timelines[1]) == [2.5, 4.5, 6.5, 8.5, 10.5]
    assert pings(timelines[2]) == [4.25, 7.25, 10.25]
    for events in timelines:
        check_stream([e for _, e in events])
        assert events[-1][1]["response"]["status"] == "cancelled"


async def test_a_run_due_sooner_wakes_the_heartbeats_task_sooner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The task sleeps until its earliest due time; a run added meanwhile that is due
    sooner (a shorter interval) is pinged on time, not when the sleep would have ended."""
    heartbeats = Heartbeats()
    engine = await scripted("first then [[stall]]", token_delay=0.25)
    slow: list[tuple[float, Event]] = []
    fast: list[tuple[float, Event]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeats.serve)
        start = trio.current_time()
        slow_run = make_run(await engine.submit(engine_request("[[stall]]", request_id="slow")),
                            ping_interval=10.0, ping_events=True, events=slow,
                            heartbeats=heartbeats)
        nursery.start_soon(slow_run.run)
        await trio.sleep(1.0)
        fast_run = make_run(await engine.submit(engine_request("[[stall]]", request_id="fast")),
                            ping_interval=0.5, ping_events=True, events=fast,
                            heartbeats=heartbeats)
        nursery.start_soon(fast_run.run)
        await trio.sleep(1.9)
        slow_run.end("cancel")
        fast_run.end("cancel")
        await slow_run.done.wait()
        await fast_run.done.wait()
        nursery.cancel_scope.cancel()
    assert [t - start for t, e in fast if e["type"] == "response.ping"] == [1.5, 2.0, 2.5]
    assert [e for _, e in slow if e["type"] == "response.ping"] == []


async def test_runs_pinged_late_together_keep_their_own_phases(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A pause of the whole process (here the clock jumps 0.9 s at once, as a long
    garbage collection would hold every task) makes five runs' pings late together; they
    are sent in one pass, and afterwards each run is pinged on its own phase again, not
    all at once an interval after the pause."""
    heartbeats = Heartbeats()
    engine = await scripted("first then [[stall]]", token_delay=0.25)
    offsets = (0.0, 0.2, 0.4, 0.6, 0.8)
    timelines: list[list[tuple[float, Event]]] = [[] for _ in offsets]
    runs = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeats.serve)
        start = trio.current_time()
        for i, offset in enumerate(offsets):
            await trio.sleep_until(start + offset)
            run = make_run(await engine.submit(engine_request("[[stall]]", request_id=f"r{i}")),
                           ping_interval=2.0, ping_events=True, events=timelines[i],
                           heartbeats=heartbeats)
            runs.append(run)
            nursery.start_soon(run.run)
        await trio.sleep_until(start + 5.95)
        autojump_clock.jump(0.9)  # pings due at 6.0 .. 6.8 all come late, at 6.85
        await trio.sleep_until(start + 9.5)
        for run in runs:
            assert run.end("cancel")
        for run in runs:
            await run.done.wait()
        nursery.cancel_scope.cancel()

    for offset, events in zip(offsets, timelines, strict=True):
        pings = [round(t - start, 6) for t, e in events if e["type"] == "response.ping"]
        assert pings == [2.0 + offset, 4.0 + offset, 6.85, 8.0 + offset], (offset, pings)
        check_stream([e for _, e in events])
