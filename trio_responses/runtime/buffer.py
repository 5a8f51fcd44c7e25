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

Memory is estimated per frame once, when it is appended, from its encoded size
(:func:`frame_cost`): a frame holds its bytes and its event, whose objects take about as
much again as their JSON, plus a few hundred bytes of object headers — measured, a small
text delta holds ~3.8 times its frame's bytes. No object graph is walked. A read hands
out at most :data:`READ_MAX_BYTES` (and at least one frame), so no reader, not even one
replaying a long log, makes one huge copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import trio


class EventReader(Protocol):
    async def read(self, cursor: int, *, primary: bool = False
                   ) -> tuple[list[Frame], int]: ...


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

@dataclass(frozen=True, slots=True)
class Frame:
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
        self, *, max_unsent_bytes: int = 0, keep_log: bool = True, primary: bool = False
    ) -> None:
        """``primary``: one reader (the foreground client) reads from the start with
        ``primary=True``; its lag is bounded and it alone releases frames. With neither
        ``keep_log`` nor ``primary`` nobody will read, and frames are not kept."""
        self._max_unsent = max_unsent_bytes
        self._keep_log = keep_log
        self._primary = primary
        self._frames: list[Frame] = []
        self._offset = 0  # log position of self._frames[0]
        self._appended_bytes = 0
        self._primary_bytes = 0  # bytes the primary reader has taken
        self._held = 0  # frame_cost of the frames kept
        self._unsent_cost = 0  # frame_cost of the frames the primary reader has not taken
        self._in_flight = 0  # what the primary reader's last chunk holds until it is back
        self._changed = trio.Event()
        self.closed = False

    def append(self, frame: Frame) -> None:
        if self.closed:
            raise RuntimeError("append to a closed EventBuffer")
        if not (self._keep_log or self._primary):
            return
        cost = frame_cost(frame)
        self._frames.append(frame)
        self._appended_bytes += len(frame.data)
        self._held += cost
        self._unsent_cost += cost
        self._wake()
        if self._primary and self._max_unsent and self._lag > self._max_unsent:
            raise BufferOverflow(
                f"the client has not read {self._lag} bytes of this stream (frames and "
                f"the objects behind them; limit {self._max_unsent})"
            )

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
        for index, frame in enumerate(self._frames):
            if frame.event is not None and frame.event.get("sequence_number", -1) > sequence_number:
                return self._offset + index
        return self._offset + len(self._frames)

    async def read(self, cursor: int, *, primary: bool = False) -> tuple[list[Frame], int]:
        """Frames after ``cursor`` (waiting for some; at most READ_MAX_BYTES of them, and
        at least one), and the new cursor.

        An empty list means the buffer is closed and the reader has everything.
        """
        if primary:
            self._in_flight = 0  # the reader is back: its last chunk has been written
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
            await self._changed.wait()

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
