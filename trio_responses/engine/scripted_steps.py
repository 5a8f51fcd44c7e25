"""Step pacing for the scripted engine: one timer for all its streams, as a GPU steps.

A GPU engine (vLLM's) runs one step for every running request at once and hands the
step's deltas over together (the vLLM bridge: one ``run_sync_soon`` batch per step).
Paced per stream instead, a scripted engine costs the server a ``trio.sleep`` per token
per stream (a cancel scope, a deadline, the timeout's processing), which no real engine
does, and spreads the streams' tokens over the interval instead of bunching them. With
step pacing, :class:`EngineSteps` is one system task: every ``interval`` seconds it
gives each of its streams its next token, in one pass, in its own task; each stream
hands the delta to its reader (offered to the reader's listener first, see
:class:`~.base.ListenedStream`, else queued and the reader woken). Each stream still gets
one token per interval: a stream joins after its first token (paced by
``first_token_delay`` as ever), and its next comes at the next step, at most ``interval``
later. A reader that has not taken its last delta gets nothing at that step (the
scripted engine does not merge, as the vLLM bridge does; it waits).

The task is started in the Trio run of the first stream that joins (a system task, like
the flusher of web/direct_send.py), and waits on an event while no stream is stepping,
so a test's ``MockClock`` autojump never spins on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

log = logging.getLogger(__name__)


class Stepped(Protocol):
    def step(self) -> bool:
        """Hand over this step's delta; False once the stream takes no more steps."""


class EngineSteps:
    """The steps of one engine, every ``interval()`` seconds while any stream runs."""

    def __init__(self, interval: Callable[[], float]) -> None:
        self._interval = interval
        self._streams: list[Stepped] = []
        self._joined = trio.Event()
        # The Trio run whose system task steps (an engine object may outlive a run).
        self._token: trio.lowlevel.TrioToken | None = None

    def join(self, stream: Stepped) -> None:
        """``stream`` gets a token at each step from the next one on."""
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:
            self._token, self._streams, self._joined = token, [], trio.Event()
            trio.lowlevel.spawn_system_task(self._run, name="scripted engine steps")
        self._streams.append(stream)
        self._joined.set()

    async def _run(self) -> None:
        while True:
            while not self._streams:
                await self._joined.wait()
                self._joined = trio.Event()
            next_step = trio.current_time() + self._interval()
            while self._streams:
                await trio.sleep_until(next_step)
                stepping, self._streams = self._streams, []
                kept = [stream for stream in stepping if self._step(stream)]
                self._streams[:0] = kept  # before any that joined during the step
                # Late (the CPU is busy): the next step at once, never a burst to catch up.
                next_step = max(next_step + self._interval(), trio.current_time())

    @staticmethod
    def _step(stream: Stepped) -> bool:
        try:
            return stream.step()
        except Exception:  # a bug: the other streams must go on
            log.exception("a scripted engine step failed")
            return False
