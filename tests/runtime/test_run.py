"""ResponseRun endings: cancel racing the engine's last delta, aborts, engine failures,
the stream buffer bound. The first cause wins, and the outcome does not depend on which
task noticed it first."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.fakes import (
    HandStream,
    RecordingStore,
    delta,
    engine_request,
    make_run,
    read_all,
)
from tests.support.events import check_stream, joined_text
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.errors import EngineError
from trio_responses.protocol.events import Event
from trio_responses.runtime.buffer import EventBuffer
from trio_responses.runtime.run import END_CAUSES, ResponseRun


def last_event(run: ResponseRun) -> Event:
    return run.buffer.events()[-1]


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


# -- cancel vs. the engine's final delta, each order forced -----------------------------


async def test_engine_finishes_first_then_cancel_changes_nothing() -> None:
    stream, store = HandStream(), RecordingStore()
    run = make_run(stream, store=store, background=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        stream.send(delta("Hello"))
        stream.send(delta(" there", finish=True, n=2))
        await run.done.wait()
        assert run.end("cancel") is False
    assert run.response["status"] == "completed"
    assert last_event(run)["type"] == "response.completed"
    assert (stream.aborts, stream.closes, run.engine_aborted) == (0, 1, False)
    assert store.finishes == [("resp_test", "completed", True)]
    assert store.rows["resp_test"].status == "completed"


async def _cancel_first(*, delta_in_flight: bool) -> tuple[ResponseRun, HandStream,
                                                           RecordingStore]:
    """Cancel while the final delta is (or is not yet) on its way from the engine."""
    stream, store = HandStream(shielded=delta_in_flight), RecordingStore()
    run = make_run(stream, store=store, background=True)
    sequencer = trio.testing.Sequencer()

    async def deliver_after_cancel() -> None:
        async with sequencer(1):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        stream.send(delta("Hello"))
        await settle()
        if delta_in_flight:
            stream.before_delivery = deliver_after_cancel
            stream.send(delta(" there", finish=True, n=2))
            await settle()  # the run's task now holds the final delta
        async with sequencer(0):
            assert run.end("cancel") is True
        assert run.end("cancel") is False  # idempotent: the first cause stays
    return run, stream, store


async def test_cancel_first_with_the_final_delta_in_flight() -> None:
    run, stream, store = await _cancel_first(delta_in_flight=True)
    assert run.response["status"] == "cancelled"
    assert joined_text(run.buffer.events()) == "Hello"  # the late delta is not sent
    assert stream.aborts == 0 and not run.engine_aborted  # it had finished: no abort
    assert store.finishes == [("resp_test", "cancelled", True)]


async def test_cancel_first_with_the_engine_still_working() -> None:
    run, stream, store = await _cancel_first(delta_in_flight=False)
    assert run.response["status"] == "cancelled"
    assert stream.aborts == 1 and run.engine_aborted
    assert store.finishes == [("resp_test", "cancelled", True)]


async def test_cancel_outcome_is_the_same_whichever_task_notices() -> None:
    """Noticed by the engine wait (Cancelled) or by the check after a delta: the same
    final status, the same last event, byte for byte."""
    noticed_by_check, _, _ = await _cancel_first(delta_in_flight=True)
    noticed_by_scope, _, _ = await _cancel_first(delta_in_flight=False)
    for run in (noticed_by_check, noticed_by_scope):
        check_stream(run.buffer.events())
        assert last_event(run)["type"] == "response.incomplete"
        assert last_event(run)["response"]["status"] == "cancelled"
    assert last_event(noticed_by_check) == last_event(noticed_by_scope)
    assert noticed_by_check.buffer.events() == noticed_by_scope.buffer.events()


@pytest.mark.parametrize("step_pacing", [False, True], ids=["stream-paced", "step-paced"])
async def test_cancel_racing_the_last_token_is_consistent(
    autojump_clock: trio.testing.MockClock, step_pacing: bool,
) -> None:
    """The canceller and the engine's last token wake at the same virtual instant; trio
    orders them at random. Either way the outcome is one consistent story (step-paced,
    the engine's step hands deltas over from its own task, offered to the run first)."""
    outcomes: set[str] = set()
    engine = ScriptedEngine(reply=lambda _: "a b c", token_delay=1.0, step_pacing=step_pacing)
    await engine.start()
    for attempt in range(40):
        store = RecordingStore()
        stream = await engine.submit(engine_request("go", request_id=f"resp_{attempt}"))
        run = make_run(stream, store=store, background=True)
        ended: list[bool] = []

        async def canceller(run: ResponseRun = run, ended: list[bool] = ended) -> None:
            await trio.sleep(2.0)  # the last token is due at exactly 2.0
            if step_pacing:
                # The engine's step hands the last delta over at 2.0 and the run's task
                # takes it one scheduler pass later: race that pass.
                await trio.lowlevel.checkpoint()
            ended.append(run.end("cancel"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.run)
            nursery.start_soon(canceller)
        status = run.response["status"]
        events = run.buffer.events()
        check_stream(events)
        assert [f[1] for f in store.finishes] == [status]
        assert events[-1]["response"]["status"] == status
        if ended == [True]:
            assert status == "cancelled" and events[-1]["type"] == "response.incomplete"
        else:
            assert status == "completed" and events[-1]["type"] == "response.completed"
            assert joined_text(events) == "a b c"
        # The run's own account of the abort agrees with what the engine saw.
        assert run.engine_aborted == (f"resp_{attempt}" in engine.aborted)
        outcomes.add(status)
    # Every abort was of a request that had not finished, and at most one per request.
    assert len(engine.aborted) == len(set(engine.aborted))
    assert engine.statistics().running == 0
    assert outcomes == {"cancelled", "completed"}


@pytest.mark.parametrize("step_pacing", [False, True], ids=["stream-paced", "step-paced"])
async def test_disconnect_after_k_deltas_aborts_once_and_generates_no_more(
    autojump_clock: trio.testing.MockClock, step_pacing: bool,
) -> None:
    """RELIABILITY row 10, in process: the client goes away after 4 deltas."""
    engine = ScriptedEngine(reply=lambda _: " ".join(["t"] * 50), token_delay=1.0,
                            step_pacing=step_pacing)
    await engine.start()
    stream = await engine.submit(engine_request("go"))
    run = make_run(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await trio.sleep(3.5)  # tokens at 0, 1, 2, 3
        assert run.end("disconnect")
        assert not run.end("disconnect")
    await trio.sleep(100)  # nothing keeps generating after the abort
    assert engine.aborted == ["resp_test"]
    assert stream._sent == 4 and engine.statistics().running == 0
    assert joined_text(run.buffer.events()) == "t t t t"
    assert run.response["status"] == "cancelled"
    assert run.response["usage"]["output_tokens"] == 4


async def test_a_burst_of_ends_aborts_every_engine_request_before_any_run_wakes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A socket storm ends hundreds of runs in one pass: each engine request is aborted
    inside ``end`` itself (the engine stops generating for it at its next step), not
    when that run's task is next scheduled."""
    engine = ScriptedEngine(reply=lambda _: " ".join(["t"] * 50), token_delay=1.0)
    await engine.start()
    runs = []
    for i in range(50):
        stream = await engine.submit(engine_request("go", request_id=f"resp_{i}"))
        runs.append(make_run(stream))
    async with trio.open_nursery() as nursery:
        for run in runs:
            nursery.start_soon(run.run)
        await trio.sleep(2.5)
        assert engine.statistics().running == 50
        for run in runs:  # no checkpoint between these ends and the checks below
            assert run.end("disconnect")
        assert sorted(engine.aborted) == sorted(f"resp_{i}" for i in range(50))
        assert engine.statistics().running == 0
        assert all(run.engine_aborted for run in runs)
    for run in runs:
        assert run.response["status"] == "cancelled" and run.engine_aborted
    assert len(engine.aborted) == 50  # once each: aclose after end aborts nothing more


async def test_a_cancelled_run_never_completes_later() -> None:
    run, _, store = await _cancel_first(delta_in_flight=True)
    final = dict(run.response)
    assert run.builder.complete(usage={}, at=2.0) == []
    assert run.builder.text("late") == [] and run.builder.fail("late") == []
    assert run.response == final and run.response["status"] == "cancelled"
    # The store refuses a late terminal write as well.
    assert await store.finish("resp_test", {**final, "status": "completed"}) is False
    assert store.rows["resp_test"].status == "cancelled"


async def test_end_before_the_run_starts() -> None:
    stream = HandStream()
    run = make_run(stream)
    assert run.end("disconnect")
    await run.run()
    kinds = [e["type"] for e in run.buffer.events()]
    assert kinds == ["response.created", "response.in_progress", "response.incomplete"]
    assert run.response["status"] == "cancelled" and stream.aborts == 1


@pytest.mark.parametrize("cause", ["shutdown", "overflow", "timeout", "no-such-cause"])
async def test_failing_causes_end_with_error_and_failed(cause: str) -> None:
    stream = HandStream()
    run = make_run(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        stream.send(delta("partial"))
        await settle()
        run.end(cause)
    events = run.buffer.events()
    check_stream(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    expected = END_CAUSES.get(cause, ("failed", "The run ended."))[1]
    assert events[-2]["message"] == expected
    assert run.response["error"]["message"] == expected
    assert stream.aborts == 1


# -- the engine ends the run ----------------------------------------------------------


async def test_engine_failure_becomes_error_and_failed() -> None:
    engine = ScriptedEngine()
    await engine.start()
    store = RecordingStore()
    run = make_run(await engine.submit(engine_request("please [[fail]]")), store=store)
    await run.run()
    events = run.buffer.events()
    check_stream(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert "failure injection" in events[-2]["message"]
    assert joined_text(events) == "You"  # the one token sent before the failure
    assert run.response["usage"]["output_tokens"] == 1
    assert store.finishes == [("resp_test", "failed", True)]
    assert engine.aborted == [] and not run.engine_aborted  # the engine ended it itself


async def test_engine_death_mid_stream(autojump_clock: trio.testing.MockClock) -> None:
    engine = ScriptedEngine(token_delay=1.0)
    await engine.start()
    run = make_run(await engine.submit(engine_request("one two three")))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await trio.testing.wait_all_tasks_blocked()
        engine.kill()
    assert last_event(run)["type"] == "response.failed"
    assert run.buffer.events()[-2]["message"] == "The engine stopped."


@pytest.mark.parametrize(("items", "message"), [
    pytest.param([delta("cut"), None], "The engine ended the request without a finish reason.",
                 id="no-finish-reason"),
    pytest.param([delta("cut"), EngineError("out of memory")], "out of memory",
                 id="engine-error"),
    pytest.param([KeyError("oops")], "Internal error (KeyError).", id="a-bug"),
])
async def test_engine_stream_failures_end_the_stream_well_formed(
    items: list[Any], message: str, caplog: pytest.LogCaptureFixture,
) -> None:
    stream = HandStream()
    run = make_run(stream)
    with caplog.at_level(logging.ERROR, logger="trio_responses.runtime.run"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.run)
            for item in items:
                if item is None:
                    stream.end_without_finish()
                else:
                    stream.send(item)
    assert run.response["error"] == {"code": "server_error", "message": message}
    check_stream(run.buffer.events())
    assert [e["type"] for e in run.buffer.events()[-2:]] == ["error", "response.failed"]
    logged = any("resp_test failed" in r.getMessage() for r in caplog.records)
    assert logged == message.startswith("Internal error")  # only a bug is logged


async def test_store_failure_does_not_break_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenStore(RecordingStore):
        async def finish(self, *args: Any, **kwargs: Any) -> bool:
            raise OSError("disk full")

    stream = HandStream()
    run = make_run(stream, store=BrokenStore())
    with caplog.at_level(logging.ERROR, logger="trio_responses.runtime.run"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.run)
            stream.send(delta("ok", finish=True))
    assert last_event(run)["type"] == "response.completed"
    assert any("saving response resp_test failed" in r.getMessage() for r in caplog.records)


# -- backpressure ---------------------------------------------------------------------


async def test_a_client_that_stops_reading_ends_the_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = ScriptedEngine(reply=lambda _: " ".join(["word"] * 10_000), token_delay=0.01)
    await engine.start()
    buffer = EventBuffer(max_unsent_bytes=4096, keep_log=False, primary=True)
    run = make_run(await engine.submit(engine_request("go")), buffer=buffer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.run)
        await run.done.wait()
        # The client reads at last: the stream it gets is whole and ends with the reason.
        frames = await read_all(buffer, primary=True)
    events = [f.event for f in frames if f.event is not None]
    check_stream(events)
    assert run.end_cause == "overflow"
    assert "--responses-stream-buffer-max-bytes" in events[-2]["message"]
    assert engine.aborted == ["resp_test"]
    # It stopped soon after the bound, not after generating everything.
    assert run.response["usage"]["output_tokens"] < 100
