"""An HTTP request's ASGI ``receive``, which the app can take the messages over from.

Hypercorn hands an app the messages of its request (the body, then ``http.disconnect``)
through a memory channel, from its connection's reading task. The app's one task
(web/connection.py) takes each message as it is put instead, and from then on uses no
channel; but the channel's ends would stay alive as long as the request, held by the
frames that got ``receive`` as an argument (Hypercorn's, Quart's), ~1.8 KiB for every
open stream. :class:`AppInbox` (made by web/tcp_server.py's task group) is that channel
until :meth:`AppInbox.take_over`, and lets go of it then.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from hypercorn.typing import ASGIReceiveEvent

# What a message taken over goes to (web/connection.py's per-request handling).
Take = Callable[[ASGIReceiveEvent], None]


class AppInbox:
    """An HTTP request's ASGI ``receive`` and Hypercorn's ``app_put``: a memory channel,
    as Hypercorn's, until :meth:`take_over`; from then on each message put is handed to a
    function at once and the channel is let go of."""

    __slots__ = ("_receive", "_send", "_take")

    def __init__(self, size: int) -> None:
        send, receive = trio.open_memory_channel[ASGIReceiveEvent](size)
        self._send: trio.MemorySendChannel[ASGIReceiveEvent] | None = send
        self._receive: trio.MemoryReceiveChannel[ASGIReceiveEvent] | None = receive
        self._take: Take | None = None

    async def put(self, message: ASGIReceiveEvent) -> None:
        if self._take is not None:
            self._take(message)
            return
        assert self._send is not None
        await self._send.send(message)

    async def receive(self) -> ASGIReceiveEvent:
        if self._receive is None:
            raise trio.ClosedResourceError("the app took this request's messages over")
        return await self._receive.receive()

    def take_over(self, take: Take) -> None:
        """From now on, hand each message to ``take`` as it is put: what is queued first,
        now. Nothing may have called :meth:`receive` (no await in between, so no message
        slips past)."""
        assert self._receive is not None and self._take is None
        drain(self._receive, take)
        self._take = take
        # A put that waited for room had its message moved in by the receives above and
        # is done with the channel: nothing uses it any more.
        self._receive.close()
        self._send = self._receive = None


def drain(channel: trio.MemoryReceiveChannel[ASGIReceiveEvent], take: Take) -> None:
    """Hand every message queued in ``channel`` to ``take``, without waiting."""
    while True:
        try:
            take(channel.receive_nowait())
        except trio.WouldBlock:
            return
