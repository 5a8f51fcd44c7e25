"""The tool-output wait's timeout, in virtual time (MockClock, autojump)."""

from __future__ import annotations

import trio
import trio.testing

from tests.support.memory_store import MemoryStore
from tests.support.service import open_service
from trio_responses.protocol.request import decode_create_request

BODY = (b'{"model": "scripted", "input": "[[call:get_time]]", "stream": true, "tools": '
        b'[{"type": "function", "name": "get_time", "parameters": {"type": "object"}}]}')


async def test_wait_times_out_incomplete_with_pings(autojump_clock: trio.testing.MockClock
                                                    ) -> None:
    async with open_service(MemoryStore(), responses_tool_timeout_seconds=300,
                            responses_ping_interval_seconds=15) as (service, engine):
        start = trio.current_time()
        run = await service.create(decode_create_request(BODY), owner="", stream=True,
                                   tool_wait=True, ping_events=True)
        await run.done.wait()
    waited = trio.current_time() - start
    assert 300 <= waited < 301
    response = run.response
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "tool_output_timeout"}
    assert [item["type"] for item in response["output"]] == ["function_call"]
    types = [event["type"] for event in run.buffer.events()]
    assert types[-1] == "response.incomplete"
    # A ping every 15 s of silence: at 15, 30 … 285 s, and maybe at 300 s, the same
    # instant as the timeout.
    assert types.count("response.ping") in (19, 20)
    assert engine.statistics().running == 0 and engine.aborted == []


async def test_compat_mode_timeout_keeps_reason_null(autojump_clock: trio.testing.MockClock
                                                     ) -> None:
    async with open_service(MemoryStore(), responses_tool_timeout_seconds=5,
                            responses_compatibility_mode=True,
                            responses_ping_interval_seconds=15) as (service, _):
        run = await service.create(decode_create_request(BODY), owner="", stream=True,
                                   tool_wait=True)
        await run.done.wait()
    assert run.response["status"] == "incomplete"
    assert run.response["incomplete_details"] == {"reason": None}
    assert all(event["type"] != "response.ping" for event in run.buffer.events())
