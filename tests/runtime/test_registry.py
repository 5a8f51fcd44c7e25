"""The registry: runs live in its nursery, are found by id, and a drain ends every one of
them with a terminal event (RELIABILITY trap 6)."""

from __future__ import annotations

import contextvars

import pytest
import trio
import trio.lowlevel
import trio.testing

from tests.protocol.builders import new_builder
from tests.runtime.fakes import engine_request, make_run
from tests.support.events import check_stream
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.errors import EngineUnavailable
from trio_responses.runtime.registry import Registry
from trio_responses.runtime.run import ResponseRun


async def new_run(engine: ScriptedEngine, text: str, response_id: str) -> ResponseRun:
    builder = new_builder()
    builder.response["id"] = response_id
    stream = await engine.submit(engine_request(text, request_id=response_id))
    return make_run(stream, builder=builder)


async def test_drain_gives_live_runs_grace_then_ends_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(reply=lambda r: "one two three [[stall]]"
                            if "[[stall]]" in str(r.messages[-1]["content"]) else "one two",
                            token_delay=1.0)
    await engine.start()
    async with Registry.open() as registry:
        quick = await new_run(engine, "go", "resp_quick")
        stuck = await new_run(engine, "[[stall]]", "resp_stuck")
        registry.start(quick)
        registry.start(stuck)
        await trio.testing.wait_all_tasks_blocked()
        assert registry.get("resp_quick") is quick
        stats = registry.statistics()
        assert (stats.live, stats.background, stats.accepting) == (2, 0, True)

        start = trio.current_time()
        await registry.drain(grace=5.0)
        assert trio.current_time() - start == 5.0  # waited the grace, no longer
        assert registry.live() == [] and registry.get("resp_quick") is None
        assert registry.statistics().accepting is False
        with pytest.raises(EngineUnavailable):
            registry.start(await new_run(engine, "late", "resp_late"))

    assert quick.response["status"] == "completed"  # finished within the grace
    assert quick.end_cause is None
    assert stuck.response["status"] == "failed" and stuck.end_cause == "shutdown"
    events = stuck.buffer.events()
    check_stream(events)
    assert events[-2]["message"] == "The server shut down while this response was running."
    assert engine.aborted == ["resp_stuck"]


async def test_drain_returns_as_soon_as_runs_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(reply=lambda _: "a b c", token_delay=1.0)
    await engine.start()
    async with Registry.open() as registry:
        run = await new_run(engine, "go", "resp_1")
        registry.start(run)
        start = trio.current_time()
        await registry.drain(grace=60.0)
        assert trio.current_time() - start == 2.0
    assert run.response["status"] == "completed" and engine.aborted == []


async def test_leaving_the_registry_ends_every_run_with_a_terminal_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(token_delay=1.0)
    await engine.start()
    runs = []
    async with Registry.open() as registry:
        for index in range(5):
            run = await new_run(engine, "[[stall]]", f"resp_{index}")
            registry.start(run)
            runs.append(run)
        await trio.sleep(3)
    for run in runs:
        assert run.done.is_set() and run.buffer.closed
        assert run.buffer.events()[-1]["type"] == "response.failed"
        check_stream(run.buffer.events())
    assert sorted(engine.aborted) == [f"resp_{i}" for i in range(5)]


async def test_cancelling_the_host_nursery_still_ends_runs_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The app's nursery cancelled from outside (not a drain): each run still sends its
    terminal event and aborts its engine request, from its shielded cleanup."""
    engine = ScriptedEngine(token_delay=1.0)
    await engine.start()
    with trio.move_on_after(2):
        async with Registry.open() as registry:
            run = await new_run(engine, "[[stall]]", "resp_1")
            registry.start(run)
            await trio.sleep_forever()
    assert run.done.is_set()
    assert run.buffer.events()[-1]["type"] == "response.failed"
    assert engine.aborted == ["resp_1"]


REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request")


async def test_a_run_holds_nothing_of_the_context_it_was_started_from() -> None:
    """Started from a request handler, a run would otherwise keep the handler's context
    variables (Quart's request context: the request, its headers, its body) for as long
    as it streams."""
    engine = ScriptedEngine(reply=lambda _: "one [[stall]]")
    await engine.start()
    REQUEST.set("the request")
    async with Registry.open() as registry:
        run = await new_run(engine, "[[stall]]", "resp_context")
        registry.start(run)
        registry.spawn(trio.sleep, 0, name="helper")
        tasks = [task for nursery in trio.lowlevel.current_task().child_nurseries
                 for task in nursery.child_tasks]
        started = [task for task in tasks if task.name in ("response resp_context", "helper")]
        assert len(started) == 2
        assert all(REQUEST not in task.context for task in started)
        run.end("cancel")
