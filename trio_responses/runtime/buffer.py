"""EventBuffer: the frames of one response, which any number of readers follow.

A response's run appends SSE frames (already encoded, so every reader shares the
bytes); readers ask for everything after their cursor and wait when there is nothing
new. A cursor is a position in the log, so a reader that joins late (``GET
?stream=true&starting_after=N``) replays from any point and then follows live.

Backpressure: the buffer is bounded in the memory its primary reader (the client that
created a foreground stream) keeps held: the frames it has not taken, and what it took
last, which the web layer is still writing out (the joined chunk and the HTTP layer's
copy of it) until the reader comes back for more. When that client stops reading and the
bound is passed, :meth:`append` raises :class:`BufferOverflow` so the run ends the
response and aborts the engine request instead of growing without limit. Frames the
primary reader has consumed are dropped unless the buffer keeps its whole log (background
responses, which later readers may replay).

The log is bounded too (``max_log_bytes``, ``--max-background-log-bytes``; issue 13,
finding 2: one background request had stored a 208 MB log). Past the bound the log is
*cut*: the oldest frames are dropped until it holds half the bound, and from then on it
is a window of the newest frames, plus the first frame (``response.created``), kept
aside. A reader whose next frame was cut — one that fell that far behind, or joins with
a ``starting_after`` before the window — is resumable only from the final object: it
waits for the response to end and is sent its terminal event (which carries the whole
final response), then the stream ends. What is saved for later replays of a cut log is
the first event and the terminal one (see ``ResponseRun._save``).

Memory is estimated per frame once, when it is appended, from its encoded size
(:func:`frame_cost`): a frame holds its bytes and its event, whose objects take about as
much again as their JSON, plus a few hundred bytes of object headers — measured, a small
text delta holds ~3.8 times its frame's bytes. No object graph is walked. A read hands
out at most :data:`READ_MAX_BYTES` (and at least one frame), so no reader, not even one
replaying a long log, makes one huge copy of it.

A primary reader that can write bytes out at once (the SSE body on an idle HTTP/1.1
connection) passes a *sink* to :meth:`EventBuffer.read`: while it waits at the end of
the log, each frame appended is offered to the sink, in the appending task, and a frame
the sink takes is read — the reader is not woken for it (the SSE writer has one task
send what all its connections took, web/sse_send.py). The first frame the sink does not
take (the socket is full, the connection busy or gone) ends that: it stays, the reader
wakes and reads it as usual, so ordering and the bound do not change; what the sink took
but could not send is the reader's transport's to finish (it wakes the reader for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import trio

from ..protocol.machine import TERMINAL_EVENTS


class EventReader(Protocol):
    async def read(self, cursor: int, *, primary: bool = False
                   ) -> tuple[list[Frame], int]: ...


# A primary reader's direct writer (see the module docstring): True if it took the bytes
# (they are the transport's to send from then on).
Sink = Callable[[bytes], bool]


class BufferOverflow(Exception):
    """The primary reader fell more than the bound behind."""


# Per frame, besides its bytes and the JSON-sized content of its event: the Frame, the
# event dict and its small values, the bytes object's header and the list slot (measured
# with tracemalloc at 310-390 bytes for text deltas; tests/runtime/test_buffer.py).
FRAME_OVERHEAD = 448
# The most frame bytes one read hands out (it returns at least one frame, however large).
READ_MAX_BYTES = 1 << 20
# What the web layer holds of the bytes a reader took, until it reads again: the chunk
# joined from the frames, and the HTTP layer's copy of it (h11 frames a chunk by copying).
IN_FLIGHT_COPIES = 2

class Frame(NamedTuple):
    """One frame of a stream, immutable (a named tuple: made once per event, and a
    frozen dataclass's ``__init__`` costs about 1 µs against 0.2)."""

    # The event (None for an SSE comment such as a compatibility-mode heartbeat).
    event: dict[str, Any] | None
    data: bytes


def frame_cost(frame: Frame) -> int:
    """The memory a frame held in a buffer costs, estimated from its size alone."""
    size = len(frame.data)
    return FRAME_OVERHEAD + (2 * size if frame.event is not None else size)


@dataclass(frozen=True, slots=True)
class BufferStatistics:
    frames: int
    # Frame bytes the primary reader has not taken.
    unsent_bytes: int
    closed: bool
    # Memory held (estimated): every frame kept, and the primary reader's last chunk.
    held_bytes: int = 0


class EventBuffer:
    def __init__(
        self, *, max_unsent_bytes: int = 0, keep_log: bool = True, primary: bool = False,
        max_log_bytes: int = 0,
    ) -> None:
        """``primary``: one reader (the foreground client) reads from the start with
        ``primary=True``; its lag is bounded and it alone releases frames. With neither
        ``keep_log`` nor ``primary`` nobody will read, and frames are not kept.
        ``max_log_bytes`` (0: no bound): past this much memory held, a kept log is cut
        (module docstring); it applies to a buffer without a primary reader."""
        self._max_unsent = max_unsent_bytes
        self._keep_log = keep_log
        self._primary = primary
        self._max_log = max_log_bytes if keep_log and not primary else 0
        # A cut log: its first frame, kept aside at position 0, and the highest sequence
        # number of the frames cut after it (positions 1 to self._offset - 1).
        self.log_cut = False
        self._head: Frame | None = None
        self._cut_through = -1
        self._frames: list[Frame] = []
        self._offset = 0  # log position of self._frames[0]
        self._appended_bytes = 0
        self._primary_bytes = 0  # bytes the primary reader has taken
        self._held = 0  # frame_cost of the frames kept
        self._unsent_cost = 0  # frame_cost of the frames the primary reader has not taken
        self._in_flight = 0  # what the primary reader's last chunk holds until it is back
        self._changed = trio.Event()
        self.closed = False
        # The waiting primary reader's sink (only while it waits at the end of the log).
        self._sink: Sink | None = None

    def append(self, frame: Frame) -> None:
        if self.closed:
            raise RuntimeError("append to a closed EventBuffer")
        if not (self._keep_log or self._primary):
            return
        sink = self._sink
        if sink is not None:
            if sink(frame.data):
                # Sent: read by the primary reader at once, so neither kept nor unsent.
                size = len(frame.data)
                self._appended_bytes += size
                self._primary_bytes += size
                self._offset += 1
                return
            self._sink = None  # this frame and those after it wait for the reader
        cost = frame_cost(frame)
        self._frames.append(frame)
        self._appended_bytes += len(frame.data)
        self._held += cost
        self._unsent_cost += cost
        self._wake()
        if self._max_log and self._held > self._max_log:
            self._cut()
        if self._primary and self._max_unsent and self._lag > self._max_unsent:
            raise BufferOverflow(
                f"the client has not read {self._lag} bytes of this stream (frames and "
                f"the objects behind them; limit {self._max_unsent})"
            )

    def _cut(self) -> None:
        """Drop the oldest frames (never the newest) until half the bound is held; the
        first frame of the log is kept aside the first time."""
        drop, freed = 0, 0
        if not self.log_cut:
            self.log_cut = True
            if self._offset == 0 and self._frames:
                self._head, drop = self._frames[0], 1  # still held, at position 0
        target = self._max_log // 2
        while drop < len(self._frames) - 1 and self._held - freed > target:
            frame = self._frames[drop]
            freed += frame_cost(frame)
            if frame.event is not None:
                self._cut_through = max(self._cut_through,
                                        int(frame.event.get("sequence_number", -1)))
            drop += 1
        del self._frames[:drop]
        self._offset += drop
        self._held -= freed
        self._unsent_cost -= freed

    @property
    def head_event(self) -> dict[str, Any] | None:
        """A cut log's first event (``response.created``), kept aside."""
        return None if self._head is None else self._head.event

    @property
    def _lag(self) -> int:
        """The memory the primary reader keeps held: frames it has not taken, and its
        last chunk while that is still being written."""
        return self._unsent_cost + self._in_flight

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def position_after(self, sequence_number: int) -> int:
        """The cursor just after the event numbered ``sequence_number``."""
        if self.log_cut and sequence_number < self._cut_through:
            # Its next event was cut: the head, or a position in the cut (read() then
            # waits for the final events).
            return 0 if sequence_number < 0 and self._head is not None else self._offset - 1
        for index, frame in enumerate(self._frames):
            if frame.event is not None and frame.event.get("sequence_number", -1) > sequence_number:
                return self._offset + index
        return self._offset + len(self._frames)

    async def read(self, cursor: int, *, primary: bool = False, sink: Sink | None = None
                   ) -> tuple[list[Frame], int]:
        """Frames after ``cursor`` (waiting for some; at most READ_MAX_BYTES of them, and
        at least one), and the new cursor.

        An empty list means the buffer is closed and the reader has everything.
        ``sink``: the primary reader's direct writer, offered what is appended while it
        waits (module docstring); the cursor returned is past what it took.
        """
        if primary:
            self._in_flight = 0  # the reader is back: its last chunk has been written
        if self.log_cut and cursor < self._offset:
            if cursor <= 0 and self._head is not None:
                return [self._head], 1
            return await self._final_frames()
        while True:
            start = max(cursor - self._offset, 0)
            if start < len(self._frames):
                end, size = start + 1, len(self._frames[start].data)
                while end < len(self._frames) and size < READ_MAX_BYTES:
                    size += len(self._frames[end].data)
                    end += 1
                frames = self._frames[start:end]
                cursor = self._offset + end
                if primary:
                    self._release(frames, cursor, size)
                return frames, cursor
            if self.closed:
                return [], cursor
            if (sink is not None and primary and not self._keep_log
                    and cursor == self._offset and not self._frames):
                # Nothing unread is held (the reader releases what it takes): each frame
                # the sink takes moves the offset on, and the reader's cursor with it.
                self._sink = sink
                try:
                    await self._changed.wait()
                finally:
                    self._sink = None
                    cursor = self._offset
            else:
                await self._changed.wait()

    async def _final_frames(self) -> tuple[list[Frame], int]:
        """For a reader whose next frame was cut: once the response has ended, its
        terminal event (and anything after it), and the cursor at the end."""
        while not self.closed:
            await self._changed.wait()
        start = len(self._frames)
        for index in range(len(self._frames) - 1, -1, -1):
            event = self._frames[index].event
            if event is not None and event.get("type") in TERMINAL_EVENTS:
                start = index
                break
        return self._frames[start:], self._offset + len(self._frames)

    def _release(self, frames: list[Frame], cursor: int, size: int) -> None:
        self._primary_bytes += size
        self._in_flight = IN_FLIGHT_COPIES * size
        cost = sum(frame_cost(frame) for frame in frames)
        self._unsent_cost -= cost
        if not self._keep_log:
            self._held -= cost
            drop = cursor - self._offset
            del self._frames[:drop]
            self._offset = cursor

    def after(self, sequence_number: int) -> BufferView:
        """A view for a reader joining now: it never yields events numbered
        ``sequence_number`` or lower, even ones not produced yet (a resume from past the
        live end), nor the heartbeats sent before it joined."""
        return BufferView(self, sequence_number, self._offset + len(self._frames))

    def events(self) -> list[dict[str, Any]]:
        """Every event still held, in order (the whole log when ``keep_log``)."""
        return [frame.event for frame in self._frames if frame.event is not None]

    def statistics(self) -> BufferStatistics:
        return BufferStatistics(
            frames=len(self._frames),
            unsent_bytes=self._appended_bytes - self._primary_bytes,
            closed=self.closed,
            held_bytes=self._held + self._in_flight,
        )


class BufferView:
    """An EventBuffer read through a filter (see :meth:`EventBuffer.after`)."""

    def __init__(self, buffer: EventBuffer, after_sequence: int, joined_at: int) -> None:
        self._buffer = buffer
        self._after = after_sequence
        self._joined_at = joined_at

    async def read(self, cursor: int, *, primary: bool = False) -> tuple[list[Frame], int]:
        while True:
            frames, cursor = await self._buffer.read(cursor, primary=primary)
            if not frames:
                return frames, cursor
            first = cursor - len(frames)
            kept = [f for index, f in enumerate(frames, first) if self._wanted(f, index)]
            if kept:
                return kept, cursor

    def _wanted(self, frame: Frame, position: int) -> bool:
        if frame.event is None:
            return position >= self._joined_at
        if frame.event["type"] == "response.ping" and position < self._joined_at:
            return False
        return int(frame.event.get("sequence_number", 0)) > self._after
