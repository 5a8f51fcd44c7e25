"""An HTTP request in one task: the app's ``asgi_http_class``.

Quart-Trio serves each request with a nursery and two tasks: one reads the ASGI
``receive`` (the request body, then ``http.disconnect``, upon which it cancels the
nursery), the other handles the request and sends the response. For a stream that
stays open for minutes, both tasks, their coroutine frames and the nursery are held all
that time: about 5 KiB of the ~50 KiB an idle SSE stream cost (``server_overhead.py
--parts idle --census``, benchmarks/README.md).

Under Hypercorn nothing needs a task of its own for the messages: Hypercorn hands each
one to the app with ``await stream.app_put(message)``, from its connection's reading
task, which is awake anyway. :class:`OneTaskConnection` has each message handed, as it
is put, to a function that does at once what Quart-Trio's reader does when the message
arrives (body bytes to the request, the body complete, or the disconnect: the request's
cancel scope cancelled), then handles the request in the app's own task, exactly as
Quart-Trio's handler does. What was queued before the app started (the body that came
with the request head) is taken first, with no await between that and the hand-over, so
no message can slip between. On web/tcp_server.py's connections (our serve paths) the
request's ``receive`` is an :class:`~.app_inbox.AppInbox`, which lets go of its channel
then; on Hypercorn's own, ``app_put``'s place is taken and its channel closed.

Where ``send`` and ``receive`` are neither (another server, a wrapper in between, a
Hypercorn that changed), Quart-Trio's two tasks serve the request unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import trio
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable
from quart.wrappers import Request, Response

from .app_inbox import AppInbox, Take, drain
from .sse_send import SSEConnection


def _hand_over(send: ASGISendCallable, receive: ASGIReceiveCallable
               ) -> Callable[[Take], None] | None:
    """How to have each message of this request handed to a function as Hypercorn puts
    it (queued ones first), if ``send`` and ``receive`` are Hypercorn's for one stream:
    an :class:`AppInbox` (web/tcp_server.py's connections), or the memory channel its
    ``app_put`` sends on (Hypercorn's own)."""
    stream = getattr(getattr(send, "inner", send), "__self__", None)  # under shield_last_send
    if not isinstance(stream, HTTPStream):
        return None
    receiver = getattr(receive, "__self__", None)
    sender = getattr(getattr(stream, "app_put", None), "__self__", None)
    if isinstance(receiver, AppInbox):
        inbox_take_over: Callable[[Take], None] = receiver.take_over
        return inbox_take_over if sender is receiver else None
    if not isinstance(receiver, trio.MemoryReceiveChannel) \
            or not isinstance(sender, trio.MemorySendChannel) \
            or getattr(sender, "_state", None) is not getattr(receiver, "_state", False):
        return None
    channel: trio.MemoryReceiveChannel[Any] = receiver

    def take_over(take: Take) -> None:
        drain(channel, take)

        async def put(message: ASGIReceiveEvent) -> None:
            take(message)

        stream.app_put = put
        # Nothing sends on it any more: closed, a send that still came would fail loudly
        # instead of filling it unread.
        channel.close()

    return take_over


class _Messages:
    """What Quart's ``handle_messages`` does with each message, done as it is put."""

    __slots__ = ("request", "scope")

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


class OneTaskConnection(SSEConnection):
    """Quart-Trio's HTTP connection (with :class:`SSEConnection`'s SSE path), in the
    app's one task under Hypercorn (see the module docstring)."""

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        hand_over = _hand_over(send, receive)
        if hand_over is None:
            await super().__call__(receive, send)
            return
        messages = _Messages(self._create_request_from_scope(send))
        hand_over(messages.take)
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
        # Held by the sending alone, which lets go of what it no longer needs (an SSE
        # body sends for minutes with no use for the response object: web/sse_send.py).
        sending = self._send_response(send, response)
        del response
        if timeout is not None:
            with trio.move_on_after(timeout):
                await sending
        else:
            await sending
