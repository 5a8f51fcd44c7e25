"""SSE transport: a :class:`~..runtime.delivery.Delivery` as an HTTP body.

The body is an async iterator object rather than an async generator, so that Quart's
``aclose`` always reaches us: when the client goes away the delivery is released, which
ends the foreground run it was reading (cause ``disconnect``) and aborts the engine
request. Nothing here awaits inside a nursery or cancel scope while suspended in
iteration. The frames already are SSE bytes; this only joins them and adds ``[DONE]``.
"""

from __future__ import annotations

from quart import Response

from ..protocol.sse import DONE
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

    def __aiter__(self) -> SSEBody:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        frames = await self._delivery.next()
        if not frames:
            self._done = True
            return DONE
        return b"".join(frame.data for frame in frames)

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
