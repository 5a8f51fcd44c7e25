"""Deltas published in the engine's hand-over, and the scripted engine's step pacing.

A stream that offers deltas to its reader's listener (``ListenedStream``) lets a run
publish a plain text delta in the task that hands it over, without waking the run's
task. Everything else — the first delta of an item, the finish, a run being ended or
steered, a builder that refuses — must still go through the run's task, so the ends
stay as deterministic as ever. The scripted engine's step pacing (one timer for all
streams) offers its deltas that way.
"""

from __future__ import annotations

import trio
import trio.testing

from tests.runtime.fakes import HandStream, RecordingStore, delta, engine_request, make_run
from tests.support.events import check_stream, joined_text
from trio_responses.engine.base import DeltaListener, EngineDelta, ListenedStream
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.runtime.buffer import EventBuffer


class OfferingStream(HandStream):
    """A hand-driven stream that offers each delta to the reader's listener first, as a
    stepping engine does, while the reader waits."""

    def __init__(self) -> None:
        super().__init__()
        self.listener: DeltaListener | None = None

    def listen(self, listener: DeltaListener | None) -> None:
        self.listener = listener

    def offer(self, item: EngineDelta) -> bool:
        if self.listener is not None and self.listener(item):
            return True
        self.send(item)
        return False


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def test_offering_streams_are_listened_streams() -> None:
    assert isinstance(OfferingStream(), ListenedStream)
    assert not isinstance(HandStream(), ListenedStream)


async def test_plain_deltas_are_published_in_the_hand_over() -> None:
    stream, store = OfferingStream(), RecordingStore()
    run = make_run(stream, store=store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await settle()
        # The first text opens the message: the run's task builds those events.
        assert stream.offer(delta("Hello")) is False
        await settle()
        # A plain delta: published at once, in the offering task, before any checkpoint.
        assert stream.offer(delta(" there", n=2)) is True
        last = run.buffer.events()[-1]
        assert (last["type"], last["delta"]) == ("response.output_text.delta", " there")
        assert run.response["output"][0]["content"][0]["text"] == "Hello there"
        # The finish is the task's.
        assert stream.offer(delta("!", finish=True, n=3)) is False
    events = run.buffer.events()
    check_stream(events)
    assert joined_text(events) == "Hello there!"
    assert run.response["status"] == "completed"
    assert run.response["usage"]["output_tokens"] == 3
    assert stream.listener is None  # the turn is over: no more offers taken


async def test_an_ended_run_takes_no_delta_in_the_hand_over() -> None:
    stream = OfferingStream()
    run = make_run(stream, store=RecordingStore(), background=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await settle()
        stream.offer(delta("Hello"))
        await settle()
        assert run.end("cancel")
        # Ended, its task not run yet: the delta is left to the task, which drops it.
        assert stream.offer(delta(" late", n=2)) is False
    assert run.response["status"] == "cancelled"
    assert joined_text(run.buffer.events()) == "Hello"
    assert run.buffer.events()[-1]["type"] == "response.incomplete"
    assert stream.aborts == 1 and run.engine_aborted


async def test_a_steered_run_leaves_the_next_delta_to_its_task() -> None:
    stream = OfferingStream()
    run = make_run(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await settle()
        stream.offer(delta("Hello"))
        await settle()
        assert run.steer()
        assert stream.offer(delta(" there", n=2)) is False
    assert run.response["status"] == "incomplete"
    assert run.response["incomplete_details"] == {"reason": "steered"}
    assert joined_text(run.buffer.events()) == "Hello there"


async def test_the_buffer_bound_holds_in_the_hand_over() -> None:
    """Nobody reads: the delta that passes the bound, published in the hand-over, ends
    the run as an overflow, exactly as from the run's task."""
    stream = OfferingStream()
    buffer = EventBuffer(max_unsent_bytes=20_000, keep_log=False, primary=True)
    run = make_run(stream, buffer=buffer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await settle()
        stream.offer(delta("x"))
        await settle()
        taken = 0
        while run.end_cause is None:
            assert stream.offer(delta(" x" * 20, n=taken + 2))
            taken += 1
        assert stream.offer(delta(" more")) is False  # ended: the task's from now on
    assert run.end_cause == "overflow"
    assert run.response["status"] == "failed"
    assert stream.aborts == 1


async def test_step_pacing_gives_each_stream_one_token_per_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Streams that start apart share the engine's steps: after its first token each
    gets the next at every step, at most one delay later, and all of its text."""
    engine = ScriptedEngine(reply=lambda _: "a b c d", token_delay=1.0, step_pacing=True)
    await engine.start()
    times: dict[str, list[float]] = {}

    async def read(name: str, start: float) -> None:
        await trio.sleep(start)
        stream = await engine.submit(engine_request("go", request_id=name))
        arrived = times.setdefault(name, [])
        text = ""
        async for item in stream:
            arrived.append(trio.current_time())
            text += item.text
        assert text == "a b c d"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "first", 0.0)
        nursery.start_soon(read, "second", 0.25)
    assert times["first"] == [0.0, 1.0, 2.0, 3.0]
    assert times["second"] == [0.25, 1.0, 2.0, 3.0]
    assert engine.statistics().running == 0 and engine.aborted == []


async def test_step_pacing_waits_for_a_reader_that_lags(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(reply=lambda _: "a b c", token_delay=1.0, step_pacing=True)
    await engine.start()
    stream = await engine.submit(engine_request("go"))
    deltas = [await stream.__anext__()]
    await trio.sleep(5.5)  # five steps pass; one delta waits, nothing is lost
    async for item in stream:
        deltas.append(item)
    assert "".join(d.text for d in deltas) == "a b c"
    assert [d.output_tokens for d in deltas] == [1, 2, 3]
    assert deltas[-1].finish_reason == "stop"


async def test_step_pacing_runs_publish_in_the_hand_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run over a step-paced stream: the same events as over a stream-paced one."""
    streams = {}
    for step_pacing in (False, True):
        engine = ScriptedEngine(reply=lambda _: "one two three four five", token_delay=1.0,
                                step_pacing=step_pacing)
        await engine.start()
        run = make_run(await engine.submit(engine_request("go")), store=RecordingStore())
        await run.run()
        check_stream(run.buffer.events())
        assert run.response["status"] == "completed"
        streams[step_pacing] = run.buffer.events()
    assert streams[True] == streams[False]


async def test_closing_a_step_paced_stream_before_its_last_delta_is_read_aborts_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(reply=lambda _: "a b", token_delay=1.0, step_pacing=True)
    await engine.start()
    stream = await engine.submit(engine_request("go"))
    await stream.__anext__()
    await trio.sleep(1.5)  # the last delta was handed over, not read
    await stream.aclose()
    assert engine.aborted == ["resp_test"] and engine.statistics().running == 0
