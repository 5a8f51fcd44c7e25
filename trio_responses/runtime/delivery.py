"""Delivery: one client's read of one response's events, whatever carries them.

This is the one runtime API both transports read through: the SSE body
(``web/streaming.py``) and the WebSocket lanes (``runtime/socket_session.py`` with
``web/websocket.py``). A transport asks :meth:`Delivery.next` for the next batch of
frames (an empty batch: the response is over and the client has everything), encodes
them its own way, and calls :meth:`Delivery.release` however it stops. Releasing a
delivery that owns its run (the foreground response this client created) ends that run
with cause ``disconnect``, so a client that leaves — an HTTP disconnect, a closed
socket, a dropped network, a lane torn down at shutdown — always aborts the engine
request through :meth:`ResponseRun.end`, the one path every early end takes.

A delivery holds one of its key's stream slots (``--max-streams-per-key``) and gives it
back when the response is over, released, or — should it be dropped unread, whose
release nobody calls — collected.
"""

from __future__ import annotations

import trio

from ..protocol.request import CreateResponseRequest
from .buffer import EventBuffer, EventReader, Frame, Sink
from .quotas import Hold
from .run import ResponseRun
from .service import ResponseService


class Delivery:
    def __init__(self, reader: EventReader, cursor: int, *, owner_run: ResponseRun | None,
                 slot: Hold | None = None) -> None:
        self._reader = reader
        self._cursor = cursor
        # The foreground run this client created: its lag is bounded and leaving ends it.
        self.owner_run = owner_run
        self.finished = False
        self._slot = slot

    async def next(self, sink: Sink | None = None) -> list[Frame]:
        """The next frames (waiting for some); ``[]`` once the response is over.
        ``sink``: a direct writer for the frames that come while this waits (see
        runtime/buffer.py; used where this client's reads are the primary ones)."""
        if self.finished:
            return []
        if sink is not None and self.owner_run is not None \
                and isinstance(self._reader, EventBuffer):
            frames, self._cursor = await self._reader.read(self._cursor, primary=True,
                                                           sink=sink)
        else:
            frames, self._cursor = await self._reader.read(
                self._cursor, primary=self.owner_run is not None)
        if not frames:
            self.finished = True
            if self._slot is not None:
                self._slot.release()
        return frames

    def __del__(self) -> None:
        # Dropped unread (nobody called release): its stream slot is given back. (Not a
        # weakref.finalize: that is ~0.3 KiB more per open stream.)
        if self._slot is not None:
            self._slot.release()

    def release(self) -> None:
        """The client is gone (or never came): end the run it owned, if still running."""
        self.finished = True
        if self._slot is not None:
            self._slot.release()
        if self.owner_run is not None:
            self.owner_run.end("disconnect")


async def start_streamed(service: ResponseService, create: CreateResponseRequest, *,
                         owner: str, tool_wait: bool = False, ping_events: bool | None = None,
                         heartbeats: bool = True, rate_limit_events: bool | None = None,
                         ) -> tuple[ResponseRun, Delivery]:
    """Create a streamed response and the creator's delivery of it (holding one of the
    owner's stream slots). ``heartbeats=False``: the run sends none (a WebSocket's are
    transport pings)."""
    slot = service.quotas.hold_stream(owner)
    try:
        run = await service.create(create, owner=owner, stream=True, tool_wait=tool_wait,
                                   ping_events=ping_events, heartbeats=heartbeats,
                                   rate_limit_events=rate_limit_events)
    except BaseException:
        slot.release()
        raise
    delivery = Delivery(run.buffer, 0, owner_run=None if run.background else run, slot=slot)
    try:
        # A disconnect that came while create() was in a worker thread (the store
        # write, which Trio does not interrupt) is only delivered at a checkpoint: take
        # it here, where the run can still be ended, rather than after the stream began.
        await trio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        delivery.release()
        raise
    return run, delivery
