"""Per-key quotas: what one API key may hold of the server at once.

Rate limits (``ratelimit.py``) bound how fast a key may ask; these bound how much it may
hold at the same time, so that one key cannot starve the others:

- **responses**: live responses (queued, running, waiting for tool outputs), of every
  kind; past the bound a create is ``429``;
- **queue share**: with a bound on the engine queue (``--max-queued-requests``), the most
  of it one key may take, so another key still finds room (``429`` for the key over its
  share, ``503`` only when the queue itself is full);
- **streams**: open event streams (a streamed create, ``GET ?stream=true``); each may
  hold up to the stream buffer bound in memory, so their number is what bounds a key's
  memory; ``429``;
- **reads**: requests that read the store or count tokens at once; past the bound they
  wait their turn (FIFO), so a key's burst of slow reads queues behind itself instead of
  ahead of every other key's.

A :class:`Hold` is one unit of a quota, taken without a checkpoint between the check and
the count (so concurrent requests cannot all pass one check) and given back exactly once,
however many times :meth:`Hold.release` is called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from ..errors import RateLimited

# What a client is told to wait before trying again: a slot frees when a response or a
# stream of the same key ends, which the server cannot predict.
RETRY_HEADERS = {"retry-after": "1", "retry-after-ms": "1000"}


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """The bounds per key (0: none)."""

    responses: int = 0
    # The engine queue bound (--max-queued-requests), and one key's share of it.
    queue: int = 0
    queue_share: int = 0
    streams: int = 0
    reads: int = 0

    @property
    def share_of_queue(self) -> int:
        """One key's share of the engine queue: as configured, else half of it."""
        if not self.queue:
            return 0
        return self.queue_share or -(-self.queue // 2)


class Hold:
    """One unit of a key's quota; :meth:`release` gives it back (once)."""

    __slots__ = ("_counts", "_owner")

    def __init__(self, counts: dict[str, int], owner: str) -> None:
        self._counts: dict[str, int] | None = counts
        self._owner = owner
        counts[owner] = counts.get(owner, 0) + 1

    def release(self) -> None:
        counts, self._counts = self._counts, None
        if counts is None:
            return
        left = counts[self._owner] - 1
        if left:
            counts[self._owner] = left
        else:
            del counts[self._owner]


@dataclass(frozen=True, slots=True)
class QuotaStatistics:
    responses: int
    streams: int
    reads: int


class KeyQuotas:
    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits
        self._responses: dict[str, int] = {}
        self._streams: dict[str, int] = {}
        self._readers: dict[str, trio.CapacityLimiter] = {}
        self._reading: dict[str, int] = {}

    def hold_response(self, owner: str) -> Hold:
        """A live response for ``owner``, or RateLimited (429) past its bound or its
        share of the engine queue."""
        held = self._responses.get(owner, 0)
        bound, share = self.limits.responses, self.limits.share_of_queue
        if bound and held >= bound:
            raise self._refused(
                f"Too many responses running for this API key ({held}; the limit is "
                f"{bound}, --max-responses-per-key). Retry when one has finished.")
        if share and held >= share:
            raise self._refused(
                f"This API key holds its whole share of the engine queue ({share} of "
                f"{self.limits.queue} requests, --max-queued-requests-per-key). Retry when "
                "one has finished.")
        return Hold(self._responses, owner)

    def hold_stream(self, owner: str) -> Hold:
        """An open event stream for ``owner``, or RateLimited (429) past its bound."""
        held = self._streams.get(owner, 0)
        bound = self.limits.streams
        if bound and held >= bound:
            raise self._refused(
                f"Too many open streams for this API key ({held}; the limit is {bound}, "
                "--max-streams-per-key). Close one, or read responses without streaming.")
        return Hold(self._streams, owner)

    @asynccontextmanager
    async def reading(self, owner: str) -> AsyncIterator[None]:
        """Hold one of ``owner``'s read slots while the block runs (waiting, in order,
        for one to free if all are taken)."""
        if not self.limits.reads:
            yield
            return
        limiter = self._readers.get(owner)
        if limiter is None:
            limiter = self._readers[owner] = trio.CapacityLimiter(self.limits.reads)
        self._reading[owner] = self._reading.get(owner, 0) + 1
        try:
            async with limiter:
                yield
        finally:
            self._reading[owner] -= 1
            if not self._reading[owner]:  # nobody holds or waits: forget the limiter
                del self._reading[owner], self._readers[owner]

    def statistics(self, owner: str) -> QuotaStatistics:
        return QuotaStatistics(responses=self._responses.get(owner, 0),
                               streams=self._streams.get(owner, 0),
                               reads=self._reading.get(owner, 0))

    @staticmethod
    def _refused(message: str) -> RateLimited:
        return RateLimited(message, headers=dict(RETRY_HEADERS))
