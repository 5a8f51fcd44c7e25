"""EventBuffer: cursors, replay, the primary reader's bound, and releasing frames."""

from __future__ import annotations

import tracemalloc

import pytest
import trio
import trio.testing

from trio_responses.protocol.events import ResponseEvents
from trio_responses.protocol.ids import counting_ids
from trio_responses.protocol.request import decode_create_request
from trio_responses.protocol.response import new_response
from trio_responses.protocol.sse import COMMENT_PING, frame
from trio_responses.runtime.buffer import (
    IN_FLIGHT_COPIES,
    READ_MAX_BYTES,
    BufferOverflow,
    EventBuffer,
    Frame,
    frame_cost,
)


def event_frame(seq: int, size: int = 0) -> Frame:
    event = {"type": "response.output_text.delta", "sequence_number": seq, "delta": "x" * size}
    return Frame(event, frame(event))


def seqs(frames: list[Frame]) -> list[int | None]:
    return [None if f.event is None else f.event["sequence_number"] for f in frames]


async def test_readers_at_different_cursors_each_get_their_own_rest() -> None:
    buffer = EventBuffer(keep_log=True)
    for seq in range(3):
        buffer.append(event_frame(seq))
    first, cursor_a = await buffer.read(0)
    late, cursor_b = await buffer.read(2)
    assert (seqs(first), cursor_a) == ([0, 1, 2], 3)
    assert (seqs(late), cursor_b) == ([2], 3)

    got: dict[str, list[int | None]] = {}

    async def follow(name: str, cursor: int) -> None:
        frames, _ = await buffer.read(cursor)
        got[name] = seqs(frames)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, "a", cursor_a)
        nursery.start_soon(follow, "b", cursor_b)
        nursery.start_soon(follow, "start", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert got == {"start": [0, 1, 2]}  # a and b wait: nothing new for them
        buffer.append(event_frame(3))
    assert got == {"start": [0, 1, 2], "a": [3], "b": [3]}


async def test_replay_after_close() -> None:
    buffer = EventBuffer(keep_log=True)
    for seq in range(4):
        buffer.append(event_frame(seq))
    buffer.close()
    frames, cursor = await buffer.read(0)
    assert seqs(frames) == [0, 1, 2, 3]
    assert await buffer.read(cursor) == ([], cursor)  # closed and read: no waiting
    frames, _ = await buffer.read(buffer.position_after(1))
    assert seqs(frames) == [2, 3]
    with pytest.raises(RuntimeError):
        buffer.append(event_frame(4))


async def test_close_wakes_a_waiting_reader() -> None:
    buffer = EventBuffer(keep_log=True)
    result: list[tuple[list[Frame], int]] = []

    async def reader() -> None:
        result.append(await buffer.read(0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert result == []
        buffer.close()
    assert result == [([], 0)]


def test_position_after_skips_comments_and_clamps() -> None:
    buffer = EventBuffer(keep_log=True)
    buffer.append(event_frame(0))
    buffer.append(event_frame(1))
    buffer.append(Frame(None, COMMENT_PING))
    buffer.append(event_frame(2))
    assert buffer.position_after(-1) == 0
    assert buffer.position_after(0) == 1
    assert buffer.position_after(1) == 3  # the comment after 1 is not replayed
    assert buffer.position_after(2) == 4
    assert buffer.position_after(99) == 4
    assert [e["sequence_number"] for e in buffer.events()] == [0, 1, 2]


async def test_primary_reader_that_falls_behind_overflows() -> None:
    one = frame_cost(event_frame(0, size=50))
    size = len(event_frame(0, size=50).data)
    buffer = EventBuffer(max_unsent_bytes=3 * one, keep_log=False, primary=True)
    for seq in range(3):
        buffer.append(event_frame(seq, size=50))
    assert buffer.statistics().unsent_bytes == 3 * size
    assert buffer.statistics().held_bytes == 3 * one
    with pytest.raises(BufferOverflow, match=f"limit {3 * one}"):
        buffer.append(event_frame(3, size=50))
    assert buffer.statistics().frames == 4  # the frame is kept: it is the reader's

    frames, cursor = await buffer.read(0, primary=True)
    assert seqs(frames) == [0, 1, 2, 3]
    stats = buffer.statistics()
    assert (stats.frames, stats.unsent_bytes) == (0, 0)
    # What it took is still being written out (its chunk, and the HTTP layer's copy).
    assert stats.held_bytes == IN_FLIGHT_COPIES * 4 * size
    got: list[list[int | None]] = []

    async def read_on() -> None:
        got.append(seqs((await buffer.read(cursor, primary=True))[0]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_on)
        await trio.testing.wait_all_tasks_blocked()
        # The reader is back: room again for the whole bound.
        for seq in range(4, 7):
            buffer.append(event_frame(seq, size=50))
    assert got == [[4, 5, 6]]


async def test_a_reader_holds_what_it_took_until_it_reads_again() -> None:
    """A client that stops reading right after taking a chunk keeps that chunk alive
    (in the web layer's send): it counts against the bound until the reader returns."""
    taken = event_frame(0, size=1000)
    small = event_frame(1, size=10)
    bound = IN_FLIGHT_COPIES * len(taken.data) + frame_cost(small)
    buffer = EventBuffer(max_unsent_bytes=bound, keep_log=False, primary=True)
    buffer.append(taken)
    await buffer.read(0, primary=True)
    buffer.append(small)  # exactly at the bound
    with pytest.raises(BufferOverflow):
        buffer.append(event_frame(2, size=10))


async def test_the_estimate_covers_what_frames_really_hold() -> None:
    """The bound is in memory really held: measured with tracemalloc, frames of text
    deltas (the bulk of a stream) hold several times their bytes, and frame_cost does
    not undercount them (nor overcount by more than half)."""
    builder = ResponseEvents(new_response(decode_create_request(
        b'{"model": "m", "input": "hi"}'), response_id="resp_1", created_at=1.0, model="m",
        service_tier="default"), counting_ids())
    builder.created()
    builder.in_progress()
    builder.text("first")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [Frame(event, data) for word in ("a", "word", "x" * 100, "é" * 50) * 1000
                for event, data in builder.text(" " + word)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    data = sum(len(f.data) for f in kept)
    estimate = sum(frame_cost(f) for f in kept)
    assert held > 2.5 * data  # what counting frame bytes alone missed
    assert held <= estimate <= 1.5 * held, (data, held, estimate)


async def test_a_read_hands_out_at_most_READ_MAX_BYTES() -> None:
    buffer = EventBuffer(keep_log=True)
    big = event_frame(0, size=READ_MAX_BYTES // 3)
    for seq in range(7):
        buffer.append(Frame(dict(big.event or {}, sequence_number=seq), big.data))
    sizes = []
    cursor = 0
    buffer.close()
    while frames := (await buffer.read(cursor))[0]:
        sizes.append(len(frames))
        cursor += len(frames)
    assert sizes == [3, 3, 1]  # past the limit with the third, at least one each time
    huge = EventBuffer(keep_log=True)
    huge.append(event_frame(0, size=2 * READ_MAX_BYTES))
    assert len((await huge.read(0))[0]) == 1


async def test_only_the_primary_reader_counts() -> None:
    one = frame_cost(event_frame(0, size=50))
    buffer = EventBuffer(max_unsent_bytes=2 * one, keep_log=True, primary=True)
    buffer.append(event_frame(0, size=50))
    buffer.append(event_frame(1, size=50))
    await buffer.read(0)  # another reader: does not release the primary's debt
    with pytest.raises(BufferOverflow):
        buffer.append(event_frame(2, size=50))
    unbounded = EventBuffer(keep_log=True, primary=True)  # 0: no bound
    for seq in range(100):
        unbounded.append(event_frame(seq, size=1000))


async def test_frames_are_released_when_not_keeping_the_log() -> None:
    buffer = EventBuffer(keep_log=False, primary=True)
    for seq in range(3):
        buffer.append(event_frame(seq))
    frames, cursor = await buffer.read(0, primary=True)
    assert seqs(frames) == [0, 1, 2]
    assert buffer.statistics().frames == 0
    assert buffer.events() == []
    buffer.append(event_frame(3))
    assert buffer.statistics().frames == 1
    frames, cursor = await buffer.read(cursor, primary=True)
    assert (seqs(frames), cursor) == ([3], 4)  # cursors stay log positions
    assert buffer.position_after(3) == 4
    buffer.close()
    assert await buffer.read(cursor, primary=True) == ([], 4)


async def test_kept_log_survives_the_primary_reader() -> None:
    buffer = EventBuffer(keep_log=True, primary=True)
    for seq in range(3):
        buffer.append(event_frame(seq))
    await buffer.read(0, primary=True)
    stats = buffer.statistics()
    assert (stats.frames, stats.unsent_bytes, stats.closed) == (3, 0, False)
    frames, _ = await buffer.read(0)
    assert seqs(frames) == [0, 1, 2]


async def test_nobody_reading_keeps_nothing() -> None:
    buffer = EventBuffer(keep_log=False, primary=False)
    for seq in range(3):
        buffer.append(event_frame(seq))
    assert buffer.statistics().frames == 0
    buffer.close()
    assert await buffer.read(0) == ([], 0)


async def test_a_sink_takes_what_comes_while_the_primary_reader_waits() -> None:
    """Frames appended while the primary reader waits go to its sink, in the appending
    task, and count as read (the reader is not woken); the first frame the sink refuses
    stays, wakes the reader and is the first it reads, and the sink is not offered the
    ones after it."""
    one = frame_cost(event_frame(0, size=50))
    buffer = EventBuffer(max_unsent_bytes=2 * one, keep_log=False, primary=True)
    buffer.append(event_frame(0))
    frames, cursor = await buffer.read(0, primary=True)
    assert seqs(frames) == [0]
    offered: list[bytes] = []
    accept = True

    def sink(data: bytes) -> bool:
        offered.append(data)
        return accept

    got: list[tuple[list[int | None], int]] = []

    async def read_on() -> None:
        frames, new_cursor = await buffer.read(cursor, primary=True, sink=sink)
        got.append((seqs(frames), new_cursor))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_on)
        await trio.testing.wait_all_tasks_blocked()
        # Far past the bound, had they been kept: the sink took them.
        for seq in range(1, 6):
            buffer.append(event_frame(seq, size=50))
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # not woken
        stats = buffer.statistics()
        assert (stats.frames, stats.unsent_bytes, stats.held_bytes) == (0, 0, 0)
        accept = False
        buffer.append(event_frame(6, size=50))
        buffer.append(event_frame(7, size=50))
    assert got == [([6, 7], 8)]
    assert [frame.data for frame in [event_frame(s, size=50) for s in range(1, 7)]] == offered


async def test_a_sink_is_only_offered_frames_while_its_reader_waits() -> None:
    buffer = EventBuffer(keep_log=False, primary=True)
    offered: list[bytes] = []

    def sink(data: bytes) -> bool:
        offered.append(data)
        return True

    with trio.CancelScope() as scope:
        scope.cancel()
        await buffer.read(0, primary=True, sink=sink)
    buffer.append(event_frame(0))  # the reader left: kept for it
    assert offered == []
    frames, cursor = await buffer.read(0, primary=True, sink=sink)
    assert (seqs(frames), cursor) == ([0], 1)
    # A buffer that keeps its log (other readers may replay it) never uses a sink.
    kept = EventBuffer(keep_log=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: kept.read(0, sink=sink))
        await trio.testing.wait_all_tasks_blocked()
        kept.append(event_frame(0))
    assert offered == []
