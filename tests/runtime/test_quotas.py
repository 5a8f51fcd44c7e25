"""KeyQuotas: holds given back exactly once, read slots per key, and a key's
burst of slow reads queueing behind itself instead of ahead of another key's read
(issue 13, finding 3: 8 concurrent input_tokens calls of k1 raised k2's GET latency)."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
import trio
import trio.testing

from tests.support.memory_store import MemoryStore
from tests.support.service import open_service
from trio_responses.errors import RateLimited
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime.buffer import EventBuffer
from trio_responses.runtime.delivery import Delivery
from trio_responses.runtime.quotas import KeyQuotas, QuotaLimits
from trio_responses.store.base import StoredResponse


def test_holds_are_given_back_once() -> None:
    quotas = KeyQuotas(QuotaLimits(responses=2, streams=1))
    first, second = quotas.hold_response("k1"), quotas.hold_response("k1")
    with pytest.raises(RateLimited, match="--max-responses-per-key"):
        quotas.hold_response("k1")
    quotas.hold_response("k2").release()
    first.release()
    first.release()  # again: nothing more is given back
    assert quotas.statistics("k1").responses == 1
    third = quotas.hold_response("k1")
    stream = quotas.hold_stream("k1")
    with pytest.raises(RateLimited, match="--max-streams-per-key"):
        quotas.hold_stream("k1")
    for hold in (second, third, stream):
        hold.release()
    assert quotas.statistics("k1") == quotas.statistics("never-seen")


def test_the_queue_share_is_half_the_queue_unless_set() -> None:
    assert QuotaLimits(queue=20).share_of_queue == 10
    assert QuotaLimits(queue=1).share_of_queue == 1
    assert QuotaLimits(queue=20, queue_share=15).share_of_queue == 15
    assert QuotaLimits(queue_share=15).share_of_queue == 0  # no queue bound: no share
    quotas = KeyQuotas(QuotaLimits(queue=4))
    holds = [quotas.hold_response("k1") for _ in range(2)]
    with pytest.raises(RateLimited, match="--max-queued-requests-per-key"):
        quotas.hold_response("k1")
    assert quotas.hold_response("k2") is not None
    holds[0].release()
    quotas.hold_response("k1")


async def test_reads_wait_for_their_own_key() -> None:
    quotas = KeyQuotas(QuotaLimits(reads=2))
    inside: list[str] = []
    entered: list[str] = []
    gate = trio.Event()

    async def read(owner: str, name: str) -> None:
        async with quotas.reading(owner):
            entered.append(name)
            inside.append(name)
            if owner == "k1":
                await gate.wait()
            inside.remove(name)

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(read, "k1", f"k1-{n}")
            await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(read, "k2", "k2")
        await trio.testing.wait_all_tasks_blocked()
        # Two of k1's reads run, three wait; k2's did not wait for any of them.
        assert entered == ["k1-0", "k1-1", "k2"]
        assert quotas.statistics("k1").reads == 5
        gate.set()
    # The waiting three got in once slots freed (in what order they then ran is the
    # scheduler's).
    assert entered[:3] == ["k1-0", "k1-1", "k2"]
    assert sorted(entered[3:]) == ["k1-2", "k1-3", "k1-4"]
    assert quotas.statistics("k1").reads == 0


class OneConnectionStore(MemoryStore):
    """A store whose reads take ``delay`` seconds each, one at a time in arrival order:
    a single connection's lock, as the SQLite store has one."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self._lock = trio.Lock()

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        async with self._lock:
            await trio.sleep(self.delay)
            return await super().get(response_id, owner)


def body(**fields: Any) -> Any:
    return decode_create_request(json.dumps({"model": "scripted", **fields}).encode())


async def test_a_keys_burst_of_reads_queues_behind_itself(
        autojump_clock: trio.testing.MockClock) -> None:
    """k1 fires 8 slow reads at once; k2 reads right after. k2 waits for at most the
    reads k1 may have running (--max-concurrent-reads-per-key, 2 here), not all 8."""
    delay = 1.0
    store = OneConnectionStore(delay)
    async with open_service(store, max_concurrent_reads_per_key=2) as (service, _):
        run = await service.create(body(input="hi"), owner="k1", stream=False)
        await run.done.wait()
        mine = await service.create(body(input="hi"), owner="k2", stream=False)
        await mine.done.wait()
        took: dict[str, float] = {}

        async def retrieve(owner: str, response_id: str, name: str) -> None:
            started = trio.current_time()
            await service.retrieve(response_id, owner)
            took[name] = trio.current_time() - started

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(retrieve, "k1", run.id, f"k1-{n}")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(retrieve, "k2", mine.id, "k2")
        assert took["k2"] <= 3 * delay, took  # two of k1's reads ahead of it, then its own
        assert max(took.values()) == pytest.approx(9 * delay)  # k1's last waited for all


def test_a_delivery_dropped_unread_gives_its_stream_slot_back() -> None:
    quotas = KeyQuotas(QuotaLimits(streams=1))
    delivery = Delivery(EventBuffer(), 0, owner_run=None, slot=quotas.hold_stream("k1"))
    assert quotas.statistics("k1").streams == 1
    del delivery
    gc.collect()
    assert quotas.statistics("k1").streams == 0
    kept = Delivery(EventBuffer(), 0, owner_run=None, slot=quotas.hold_stream("k1"))
    kept.release()
    del kept  # released already: given back once
    assert quotas.statistics("k1").streams == 0
