"""Retention of stored responses (issue 13, finding 9): a time to live, and an optional
size quota per key, enforced by a background sweep that never blocks requests.

Stored responses used to stay until their key deleted them. Now, as OpenAI does
(30 days), a finished response older than ``--store-ttl-days`` is deleted with its input
items and event log, and with ``--store-max-bytes-per-key`` a key whose stored responses
take more than that (their JSON: object, input items and event log) loses its oldest
finished ones until it is within it. Running responses are never deleted; conversations
are not touched (their items stay until deleted, as OpenAI's do).

The sweep runs every ``--store-sweep-interval-seconds`` (and once at start-up) in the
server's lifetime nursery. Each store call deletes at most :attr:`RetentionPolicy.batch`
rows in one short write transaction, and the writer's lock is FIFO, so a request's write
waits for one batch at most, never for the sweep; reads run on the store's read
connections and do not wait at all. An error is logged and the next sweep tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..config import Settings
from ..store.base import ResponseStore

log = logging.getLogger("trio_responses")

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    # Seconds a finished response is kept after it was created (0: until deleted).
    ttl_seconds: float = 30 * DAY
    # Most bytes of stored responses per key (0: no quota).
    max_bytes_per_owner: int = 0
    # Seconds between sweeps.
    interval: float = 600.0
    # Rows deleted per store call (one write transaction).
    batch: int = 256

    @property
    def enabled(self) -> bool:
        return bool(self.ttl_seconds or self.max_bytes_per_owner)


async def sweep(store: ResponseStore, policy: RetentionPolicy,
                clock: Callable[[], float] = time.time) -> int:
    """One sweep: the expired responses, then the keys over their quota, a batch per
    store call. Returns how many responses were deleted."""
    deleted = 0
    if policy.ttl_seconds:
        cutoff = clock() - policy.ttl_seconds
        while True:
            count = await store.expire(created_before=cutoff, limit=policy.batch)
            deleted += count
            if count < policy.batch:
                break
    if policy.max_bytes_per_owner:
        while True:
            count = await store.trim(max_bytes_per_owner=policy.max_bytes_per_owner,
                                     limit=policy.batch)
            deleted += count
            if count < policy.batch:
                break
    return deleted


async def sweep_forever(store: ResponseStore, policy: RetentionPolicy,
                        clock: Callable[[], float] = time.time) -> None:
    """Sweep now, then every ``policy.interval`` seconds, until cancelled."""
    if not policy.enabled:
        return
    while True:
        try:
            deleted = await sweep(store, policy, clock)
        except Exception:
            log.exception("the retention sweep failed; the next one tries again")
        else:
            if deleted:
                log.info("retention: deleted %d stored responses", deleted)
        await trio.sleep(policy.interval)


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The policy the server's flags say (--store-ttl-days, --store-max-bytes-per-key,
    --store-sweep-interval-seconds)."""
    return RetentionPolicy(ttl_seconds=settings.store_ttl_days * DAY,
                           max_bytes_per_owner=settings.store_max_bytes_per_key,
                           interval=settings.store_sweep_interval_seconds)
