"""SSE transport: a :class:`~..runtime.delivery.Delivery` as an HTTP body.

The body is an async iterator object rather than an async generator, so that Quart's
``aclose`` always reaches us: when the client goes away the delivery is released, which
ends the foreground run it was reading (cause ``disconnect``) and aborts the engine
request. Nothing here awaits inside a nursery or cancel scope while suspended in
iteration. The frames already are SSE bytes; this only joins them and adds ``[DONE]``.
"""

from __future__ import annotations

import trio
from quart import Response

from ..protocol.sse import DONE
from ..runtime.buffer import Sink
from ..runtime.delivery import Delivery

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class SSEBody:
    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self._done = False
        # Set by a transport that can write frames out at once (web/sse_send.py): while
        # the body waits, the frames that come go straight out (runtime/buffer.py).
        self.sink: Sink | None = None
        self._waiting: trio.CancelScope | None = None

    def __aiter__(self) -> SSEBody:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        if self.sink is None:
            frames = await self._delivery.next()
        else:
            # wake() interrupts the wait: the sink's writer has bytes the body must send
            # (an empty chunk, which the writer does not send, brings the body to it).
            # A read that returned first keeps its frames: they are sent after those.
            with trio.CancelScope() as self._waiting:
                frames = await self._delivery.next(self.sink)
            woken, self._waiting = self._waiting.cancelled_caught, None
            if woken:
                return b""
        if not frames:
            self._done = True
            return DONE
        return b"".join(frame.data for frame in frames)

    def wake(self) -> None:
        """Bring a body waiting for frames back to its transport (see __anext__)."""
        if self._waiting is not None:
            self._waiting.cancel()

    async def aclose(self) -> None:
        self.release()

    def release(self) -> None:
        """The client is gone (or never came): release the delivery."""
        self._done = True
        self._delivery.release()


def sse_response(body: SSEBody, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=200, headers={**SSE_HEADERS, **(headers or {})})
    # Quart cuts a body after RESPONSE_TIMEOUT (60 s) unless told not to; our runs end
    # themselves with a terminal event instead.
    response.timeout = None
    return response
