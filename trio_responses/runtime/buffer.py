"""EventBuffer: the frames of one response, which any number of readers follow.

A response's run appends SSE frames (already encoded, so every reader shares the
bytes); readers ask for everything after their cursor and wait when there is nothing
new. A cursor is a position in the log, so a reader that joins late (``GET
?stream=true&starting_after=N``) replays from any point and then follows live.

Backpressure: the buffer is bounded in *unsent* bytes for its primary reader (the
client that created a foreground stream). When that client stops reading and the bound
is passed, :meth:`append` raises :class:`BufferOverflow` so the run ends the response
and aborts the engine request instead of growing without limit. Frames the primary
reader has consumed are dropped unless the buffer keeps its whole log (background
responses, which later readers may replay).
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


@dataclass(frozen=True, slots=True)
class Frame:
    # The event (None for an SSE comment such as a compatibility-mode heartbeat).
    event: dict[str, Any] | None
    data: bytes


@dataclass(frozen=True, slots=True)
class BufferStatistics:
    frames: int
    unsent_bytes: int
    closed: bool


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
        self._changed = trio.Event()
        self.closed = False

    def append(self, frame: Frame) -> None:
        if self.closed:
            raise RuntimeError("append to a closed EventBuffer")
        if not (self._keep_log or self._primary):
            return
        self._frames.append(frame)
        self._appended_bytes += len(frame.data)
        self._wake()
        if (
            self._primary
            and self._max_unsent
            and self._appended_bytes - self._primary_bytes > self._max_unsent
        ):
            raise BufferOverflow(
                f"the client has not read {self._appended_bytes - self._primary_bytes} bytes "
                f"of this stream (limit {self._max_unsent})"
            )

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
        """Frames after ``cursor`` (waiting for some), and the new cursor.

        An empty list means the buffer is closed and the reader has everything.
        """
        while True:
            start = max(cursor - self._offset, 0)
            if start < len(self._frames):
                frames = self._frames[start:]
                cursor = self._offset + len(self._frames)
                if primary:
                    self._release(frames, cursor)
                return frames, cursor
            if self.closed:
                return [], cursor
            await self._changed.wait()

    def _release(self, frames: list[Frame], cursor: int) -> None:
        self._primary_bytes += sum(len(frame.data) for frame in frames)
        if not self._keep_log:
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
