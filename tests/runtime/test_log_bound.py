"""The bounded event log of a background response (issue 13, finding 2).

The probe: one background request with ``ignore_eos`` and a huge ``max_output_tokens``
kept a 208 MB event log in memory and in its row. Now the log is cut past
``--max-background-log-bytes``: memory stays within the bound, a reader that keeps up
gets every event, one whose next event was cut gets the final event (resumable from the
final object only), and what is stored for replays is the first and the final event."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing

from tests.runtime.fakes import RecordingStore, read_all
from tests.support.events import check_stream
from tests.support.service import open_service
from trio_responses.protocol.request import decode_create_request
from trio_responses.protocol.sse import frame
from trio_responses.runtime.buffer import EventBuffer, Frame, frame_cost

BOUND = 20_000


def event_frame(seq: int, kind: str = "response.output_text.delta") -> Frame:
    event: dict[str, Any] = {"type": kind, "sequence_number": seq, "delta": "x" * 100}
    return Frame(event, frame(event))


def seqs(frames: list[Frame]) -> list[int]:
    return [int(f.event["sequence_number"]) for f in frames if f.event is not None]


def filled(n: int) -> EventBuffer:
    buffer = EventBuffer(keep_log=True, max_log_bytes=BOUND)
    buffer.append(event_frame(0, "response.created"))
    for seq in range(1, n):
        buffer.append(event_frame(seq))
        assert buffer.statistics().held_bytes <= BOUND + frame_cost(event_frame(seq))
    return buffer


async def test_the_log_is_cut_and_a_reader_that_fell_behind_gets_the_final_event() -> None:
    buffer = filled(1000)
    assert buffer.log_cut and buffer.head_event is not None
    assert buffer.head_event["type"] == "response.created"
    assert buffer.statistics().held_bytes <= BOUND
    kept = seqs([Frame(e, b"") for e in buffer.events()])
    assert kept == list(range(kept[0], 1000))  # the newest, in order

    got: dict[str, list[int]] = {}

    async def reader(name: str, after: int) -> None:
        view = buffer.after(after)
        got[name] = seqs(await read_all(view, buffer.position_after(after)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "from the start", -1)
        nursery.start_soon(reader, "in the cut", 5)
        nursery.start_soon(reader, "in the window", 998)
        await trio.testing.wait_all_tasks_blocked()
        assert got == {}  # those in the cut wait for the end; the window's reader for more
        buffer.append(event_frame(1000, "response.completed"))
        buffer.close()
    assert got == {"from the start": [0, 1000], "in the cut": [1000],
                   "in the window": [999, 1000]}


async def test_a_reader_that_keeps_up_gets_every_event() -> None:
    buffer = EventBuffer(keep_log=True, max_log_bytes=BOUND)
    got: list[int] = []

    async def reader() -> None:
        got.extend(seqs(await read_all(buffer, 0)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for seq in range(1000):
            buffer.append(event_frame(seq))
            await trio.testing.wait_all_tasks_blocked()
        buffer.append(event_frame(1000, "response.completed"))
        buffer.close()
    assert buffer.log_cut
    assert got == list(range(1001))


async def test_an_uncut_log_and_a_foreground_stream_are_unchanged() -> None:
    small = filled(10)
    assert not small.log_cut and len(small.events()) == 10
    # A foreground stream's bound is its reader's (--responses-stream-buffer-max-bytes).
    foreground = EventBuffer(keep_log=False, primary=True, max_log_bytes=BOUND)
    for seq in range(100):
        foreground.append(event_frame(seq))
    assert not foreground.log_cut


def body(**fields: Any) -> Any:
    return decode_create_request(json.dumps({"model": "scripted", **fields}).encode())


async def test_a_long_background_response_stores_its_first_and_final_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = RecordingStore()
    words = " ".join(f"w{i}" for i in range(400))
    async with open_service(store, token_delay=0.01,
                            max_background_log_bytes=BOUND) as (service, _):
        run = await service.create(body(input=words, background=True), owner="k",
                                   stream=False)
        peak = 0
        while not run.done.is_set():
            peak = max(peak, run.buffer.statistics().held_bytes)
            await trio.sleep(0.05)
        assert run.buffer.log_cut and peak <= 2 * BOUND
        final = await service.retrieve(run.id, "k")
        assert final["status"] == "completed"
        assert final["output"][0]["content"][0]["text"] == f"You said: {words}"
        log = store.event_logs[run.id]
        assert [e["type"] for e in log] == ["response.created", "response.completed"]
        assert log[-1]["response"] == final
        await trio.testing.wait_all_tasks_blocked()

        reader, cursor = await service.follow(run.id, "k", None)
        replay = [f.event for f in await read_all(reader, cursor) if f.event is not None]
        assert replay == log
        reader, cursor = await service.follow(run.id, "k", 50)
        assert [f.event for f in await read_all(reader, cursor)] == log[1:]


async def test_a_short_background_response_keeps_its_whole_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = RecordingStore()
    async with open_service(store, max_background_log_bytes=BOUND) as (service, _):
        run = await service.create(body(input="one two three", background=True),
                                   owner="k", stream=False)
        await run.done.wait()
        log = store.event_logs[run.id]
        check_stream([dict(e) for e in log], replay=True)
        assert not run.buffer.log_cut and len(log) > 5
