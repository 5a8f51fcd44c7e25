"""An HTTP request in one task: the app's ``asgi_http_class``.

Quart-Trio serves each request with a nursery and two tasks: one reads the ASGI
``receive`` (the request body, then ``http.disconnect``, upon which it cancels the
nursery), the other handles the request and sends the response. For a stream that
stays open for minutes, both tasks, their coroutine frames and the nursery are held all
that time: about 5 KiB of the ~50 KiB an idle SSE stream cost (``server_overhead.py
--parts idle --census``, benchmarks/README.md).

Under Hypercorn nothing needs a task of its own for the messages: Hypercorn hands each
one to the app with ``await stream.app_put(message)``, from its connection's reading
task, which is awake anyway. :class:`OneTaskConnection` takes the place of ``app_put``
with a function that does at once what Quart-Trio's reader does when the message
arrives (body bytes to the request, the body complete, or the disconnect: the request's
cancel scope cancelled), then handles the request in the app's own task, exactly as
Quart-Trio's handler does. What was queued before the app started (the body that came
with the request head) is taken from the ASGI channel first, with no await between that
and taking ``app_put``'s place, so no message can slip between.

Where ``send`` and ``receive`` are not Hypercorn's ``HTTPStream.app_send`` and the
receiving end of the channel its ``app_put`` sends on (another server, a wrapper in
between, a Hypercorn that changed), Quart-Trio's two tasks serve the request unchanged.
"""

from __future__ import annotations

from typing import Any, cast

import trio
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable
from quart.wrappers import Request, Response

from .sse_send import SSEConnection


def _hypercorn_stream(send: ASGISendCallable, receive: ASGIReceiveCallable
                      ) -> tuple[HTTPStream, trio.MemoryReceiveChannel[Any]] | None:
    """The Hypercorn stream behind ``send``, and the channel ``receive`` reads, if that
    stream's ``app_put`` sends on that very channel."""
    stream = getattr(getattr(send, "inner", send), "__self__", None)  # under shield_last_send
    channel = getattr(receive, "__self__", None)
    if not isinstance(stream, HTTPStream) or not isinstance(channel, trio.MemoryReceiveChannel):
        return None
    sender = getattr(getattr(stream, "app_put", None), "__self__", None)
    if not isinstance(sender, trio.MemorySendChannel) \
            or getattr(sender, "_state", None) is not getattr(channel, "_state", False):
        return None
    return stream, channel


class _Messages:
    """What Quart's ``handle_messages`` does with each message, done as it is put."""

    def __init__(self, request: Request) -> None:
        # None once the response is being sent: a long stream does not hold its request
        # (headers, body, locks) for its whole life.
        self.request: Request | None = request
        self.scope = trio.CancelScope()

    def take(self, message: ASGIReceiveEvent) -> None:
        if message["type"] == "http.request":
            if self.request is not None:
                self.request.body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.request.body.set_complete()
        elif message["type"] == "http.disconnect":
            self.scope.cancel()  # as Quart-Trio cancels its nursery

    async def put(self, message: ASGIReceiveEvent) -> None:
        self.take(message)


class OneTaskConnection(SSEConnection):
    """Quart-Trio's HTTP connection (with :class:`SSEConnection`'s SSE path), in the
    app's one task under Hypercorn (see the module docstring)."""

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        found = _hypercorn_stream(send, receive)
        if found is None:
            await super().__call__(receive, send)
            return
        stream, channel = found
        messages = _Messages(self._create_request_from_scope(send))
        while True:
            try:
                messages.take(channel.receive_nowait())
            except trio.WouldBlock:
                break
        stream.app_put = messages.put
        # Nothing sends on it any more: closed, a send that still came would fail loudly
        # instead of filling it unread.
        channel.close()
        with messages.scope:
            await self._handle(messages, send)

    async def _handle(self, messages: _Messages, send: ASGISendCallable) -> None:
        """Quart-Trio's ``handle_request``, without the nursery to cancel at its end."""
        assert messages.request is not None
        response = await self.app.handle_request(messages.request)
        messages.request = None
        if isinstance(response, Response) and response.timeout != Ellipsis:
            timeout = cast(float | None, response.timeout)
        else:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        if timeout is not None:
            with trio.move_on_after(timeout):
                await self._send_response(send, response)
        else:
            await self._send_response(send, response)
