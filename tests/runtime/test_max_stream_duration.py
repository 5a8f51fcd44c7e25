"""--responses-max-stream-seconds ends a run with a terminal event (virtual time)."""

from __future__ import annotations

import trio
import trio.testing

from tests.support.memory_store import MemoryStore
from trio_responses.config import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.protocol.ids import counting_ids
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime.registry import Registry
from trio_responses.runtime.service import ResponseService


async def test_a_stalled_stream_ends_at_the_limit(autojump_clock: trio.testing.MockClock
                                                  ) -> None:
    engine = ScriptedEngine(model_name="scripted")
    await engine.start()
    settings = Settings(engine="scripted", responses_max_stream_seconds=120,
                        responses_ping_interval_seconds=0)
    async with Registry.open() as registry:
        service = ResponseService(settings=settings, engine=engine, store=MemoryStore(),
                                  registry=registry, ids=counting_ids())
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
