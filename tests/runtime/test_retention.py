"""The retention sweep (issue 13, finding 9): it deletes what the policy says, a batch
per store call with requests served between the batches, sweeps again every interval,
and survives a failing sweep."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
import trio.testing

from tests.support.memory_store import MemoryStore
from trio_responses.config import Settings
from trio_responses.runtime.retention import (
    DAY,
    RetentionPolicy,
    retention_policy,
    sweep_forever,
)
from trio_responses.store.base import StoredResponse

NOW = 1_700_000_000.0


def clock() -> float:
    return NOW + trio.current_time()


async def add(store: MemoryStore, rid: str, created_at: float) -> None:
    await store.create(StoredResponse(
        id=rid, owner="k", status="in_progress", background=False,
        previous_response_id=None, created_at=created_at,
        response={"id": rid, "status": "in_progress"}, input_items=()))
    assert await store.finish(rid, {"id": rid, "status": "completed"})


class TracingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def expire(self, *, created_before: float, limit: int) -> int:
        self.calls.append("expire")
        await trio.sleep(0.01)  # a transaction takes a moment
        return await super().expire(created_before=created_before, limit=limit)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        self.calls.append("get")
        return await super().get(response_id, owner)


def test_the_default_policy_is_thirty_days() -> None:
    policy = retention_policy(Settings())
    assert policy.ttl_seconds == 30 * DAY and policy.max_bytes_per_owner == 0
    assert policy.enabled
    assert not retention_policy(Settings(store_ttl_days=0)).enabled


async def test_the_sweep_deletes_in_batches_between_requests(
        autojump_clock: trio.testing.MockClock) -> None:
    store = TracingStore()
    for i in range(100):
        await add(store, f"resp_old{i}", NOW - 200)
    await add(store, "resp_new", NOW)
    policy = RetentionPolicy(ttl_seconds=100, interval=60, batch=10)
    served = 0

    async def requests() -> None:
        nonlocal served
        while True:
            await store.get("resp_new", "k")
            served += 1
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requests)
        nursery.start_soon(sweep_forever, store, policy, clock)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)
        assert sorted(store.rows) == ["resp_new"]
        expires = [i for i, call in enumerate(store.calls) if call == "expire"]
        assert len(expires) == 11  # ten full batches, and one that found nothing more
        # Requests were served between the batches, not held until the sweep was done.
        assert "get" in store.calls[expires[0]:expires[-1]]
        # The next sweep, an interval later, finds the response that has aged meanwhile.
        await trio.sleep(120)
        assert store.rows == {}
        nursery.cancel_scope.cancel()
    assert served > 0


async def test_a_failing_sweep_is_logged_and_the_next_one_runs(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    class FailingOnce(MemoryStore):
        failed = False

        async def expire(self, **kwargs: Any) -> int:
            if not self.failed:
                self.failed = True
                raise OSError("disk I/O error")
            return await super().expire(**kwargs)

    store = FailingOnce()
    await add(store, "resp_old", NOW - 200)
    with caplog.at_level(logging.ERROR, logger="trio_responses"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweep_forever, store,
                               RetentionPolicy(ttl_seconds=100, interval=60), clock)
            await trio.sleep(1)
            assert "resp_old" in store.rows
            await trio.sleep(60)
            assert store.rows == {}
            nursery.cancel_scope.cancel()
    assert "retention sweep failed" in caplog.text


async def test_the_size_quota_alone(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    for i in range(4):
        await add(store, f"resp_{i}", NOW - 10 * (4 - i))
    # Each row's size: its final object and its (empty) input items, as JSON.
    size = len(json.dumps({"id": "resp_0", "status": "completed"},
                          separators=(",", ":")).encode()) + len(b"[]")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sweep_forever, store, RetentionPolicy(
            ttl_seconds=0, max_bytes_per_owner=2 * size + size // 2, interval=60), clock)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert sorted(store.rows) == ["resp_2", "resp_3"]  # the two newest fit
