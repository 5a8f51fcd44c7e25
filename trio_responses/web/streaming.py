"""SSE responses: bytes out of an EventBuffer, and the disconnect that ends a run.

The body is an async iterator object rather than an async generator, so that Quart's
``aclose`` always reaches us: when the client goes away the foreground run it was
reading is ended (cause ``disconnect``), which aborts the engine request. Nothing here
awaits inside a nursery or cancel scope while suspended in iteration.

A body holds one of its key's stream slots (``--max-streams-per-key``) and gives it back
when the stream is over, closed, or — should a body be dropped unsent, whose ``aclose``
Quart never calls — collected.
"""

from __future__ import annotations

import weakref

from quart import Response

from ..protocol.sse import DONE
from ..runtime.buffer import EventReader
from ..runtime.quotas import Hold
from ..runtime.run import ResponseRun

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class SSEBody:
    def __init__(self, buffer: EventReader, cursor: int, *, owner_run: ResponseRun | None,
                 slot: Hold | None = None) -> None:
        self._buffer = buffer
        self._cursor = cursor
        # The foreground run this client created: its lag is bounded and leaving ends it.
        self._owner_run = owner_run
        self._done = False
        self._slot = slot
        if slot is not None:
            weakref.finalize(self, slot.release)

    def __aiter__(self) -> SSEBody:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        frames, self._cursor = await self._buffer.read(
            self._cursor, primary=self._owner_run is not None
        )
        if not frames:
            self._done = True
            if self._slot is not None:
                self._slot.release()
            return DONE
        return b"".join(frame.data for frame in frames)

    async def aclose(self) -> None:
        self.release()

    def release(self) -> None:
        """The client is gone (or never came): end the run it owned, if still running."""
        self._done = True
        if self._slot is not None:
            self._slot.release()
        if self._owner_run is not None:
            self._owner_run.end("disconnect")


def sse_response(body: SSEBody, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=200, headers={**SSE_HEADERS, **(headers or {})})
    # Quart cuts a body after RESPONSE_TIMEOUT (60 s) unless told not to; our runs end
    # themselves with a terminal event instead.
    response.timeout = None
    return response
