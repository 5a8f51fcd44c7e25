"""--responses-max-stream-seconds ends a run with a terminal event (virtual time)."""

from __future__ import annotations

import trio
import trio.testing

from tests.support.memory_store import MemoryStore
from tests.support.service import open_service
from trio_responses.protocol.request import decode_create_request


async def test_a_stalled_stream_ends_at_the_limit(autojump_clock: trio.testing.MockClock
                                                  ) -> None:
    async with open_service(MemoryStore(), responses_max_stream_seconds=120) as (service,
                                                                                engine):
        start = trio.current_time()
        run = await service.create(
            decode_create_request(b'{"model": "scripted", "input": "[[stall]]"}'),
            owner="", stream=True)
        await run.done.wait()
    assert trio.current_time() - start == 120
    assert run.end_cause == "timeout" and run.engine_aborted
    assert run.response["status"] == "failed"
    assert "maximum stream duration" in run.response["error"]["message"]
    assert engine.aborted == [run.id] and engine.statistics().running == 0
    assert run.buffer.events()[-1]["type"] == "response.failed"
