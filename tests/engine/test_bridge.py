"""The bridge's threading, aborts and failure paths, over a fake engine (no vLLM needed)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from tests.engine.fakes import FakeCore, fake_engine
from trio_responses import errors
from trio_responses.engine.base import (
    Engine,
    EngineDelta,
    EngineRequest,
    ListenedStream,
    SamplingOptions,
    ToolCallDelta,
)
from trio_responses.engine.vllm.bridge import VLLMEngine, VLLMStream


def request(content: str = "hello there", max_tokens: int = 5, **kwargs: Any) -> EngineRequest:
    return EngineRequest(
        request_id="r",
        messages=({"role": "user", "content": content},),
        sampling=SamplingOptions(max_tokens=max_tokens),
        **kwargs,
    )


@asynccontextmanager
async def started(core: FakeCore, **kwargs: Any) -> AsyncIterator[VLLMEngine]:
    engine = fake_engine(core, **kwargs)
    await engine.start()
    try:
        yield engine
    finally:
        with trio.fail_after(5):
            await engine.aclose()


async def deltas_of(core: FakeCore, *requests: EngineRequest,
                    **kwargs: Any) -> list[list[EngineDelta]]:
    """Each request's deltas, read to the end, from a fake-engine bridge (``kwargs``)."""
    async with started(core, **kwargs) as engine:
        results = []
        for each in requests:
            stream = await engine.submit(each)
            results.append([delta async for delta in stream])
        return results


async def settle(engine: VLLMEngine, core: FakeCore, predicate: Any) -> None:
    """Wait (at most 5 s) for engine-thread state that Trio cannot wait on directly."""
    with trio.fail_after(5):
        for _ in range(5000):
            if predicate():
                return
            await trio.sleep(0.001)


async def test_satisfies_the_engine_protocol() -> None:
    assert isinstance(fake_engine(FakeCore()), Engine)


async def test_stream_yields_deltas_then_finishes() -> None:
    core = FakeCore()
    async with started(core) as engine:
        req = request(max_tokens=5)
        stream = await engine.submit(req)
        deltas = [delta async for delta in stream]
        assert "".join(d.text for d in deltas) == "t0 t1 t2 t3 t4 "
        assert deltas[-1].finish_reason == "length"
        assert deltas[-1].output_tokens == 5
        assert deltas[-1].prompt_tokens == await engine.count_tokens(req)
        await stream.aclose()
        assert core.aborted == []
        stats = engine.statistics()
        assert (stats.submitted_total, stats.aborted_total, stats.healthy) == (1, 0, True)
    assert core.shutdowns == 1
    assert not engine.statistics().healthy


async def test_one_batch_per_step_for_all_requests() -> None:
    core = FakeCore(step_delay=0.005)
    async with started(core) as engine:
        finals: list[EngineDelta] = []

        async def one() -> None:
            stream = await engine.submit(request(max_tokens=20))
            finals.extend([delta async for delta in stream][-1:])

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
        assert [final.output_tokens for final in finals] == [20] * 8
        # Batches cross the thread boundary once per step, not once per token.
        assert engine.statistics().extra["steps"] <= core.steps + 2
        assert core.steps < 8 * 20 / 2


async def test_slow_reader_gets_merged_deltas() -> None:
    core = FakeCore()
    async with started(core) as engine:
        stream = await engine.submit(request(max_tokens=10))
        await settle(engine, core, lambda: core.steps >= 10 and not core.has_unfinished_requests())
        await settle(engine, core, lambda: engine.statistics().running == 0)
        deltas = [delta async for delta in stream]
        assert len(deltas) == 1
        assert deltas[0].text == "".join(f"t{i} " for i in range(10))
        assert deltas[0].finish_reason == "length"


async def test_abort_reaches_the_engine_and_ends_the_stream() -> None:
    core = FakeCore()
    async with started(core) as engine:
        stream = await engine.submit(request(max_tokens=100_000))
        seen = 0
        async for _delta in stream:
            seen += 1
            if seen == 2:
                break
        await stream.aclose()
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        await settle(engine, core, lambda: core.aborted and engine.statistics().running == 0)
        assert core.aborted == core.added
        assert engine.statistics().aborted_total == 1


@dataclass
class GatedCore(FakeCore):
    """A fake engine whose steps, once ``gated``, each wait for the test to let them run."""

    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    gated: bool = False
    waiting: bool = False  # a step waits at the gate

    def step(self) -> list[Any]:
        if self.gated:
            self.waiting = True
            self.gate.acquire()
            self.waiting = False
        return super().step()

    def open(self) -> None:
        self.gated = False
        self.gate.release()


async def test_the_running_gauge_drops_when_an_abort_lands_not_a_step_later() -> None:
    core = GatedCore()
    async with started(core) as engine:
        first = await engine.submit(request(max_tokens=100_000))
        second = await engine.submit(request(max_tokens=100_000))
        await first.__anext__()
        await second.__anext__()
        core.gated = True
        await settle(engine, core, lambda: core.waiting)  # a step is in flight
        await settle(engine, core, lambda: engine.statistics().running == 2)
        await first.aclose()
        core.gate.release()  # the step in flight when the abort came ends...
        # ...and the count without the aborted request is reported before the next step
        # ends (it waits at the gate).
        await settle(engine, core, lambda: engine.statistics().running == 1)
        assert core.waiting
        assert core.aborted == core.added[:1]
        core.open()
        await second.aclose()


async def test_an_early_abort_goes_out_during_the_step_after_the_queued_one() -> None:
    # With the core in its own process (LoadedEngine.abort_soon), closing a stream sends
    # the core its abort while the engine thread is still in step(), and only once the
    # engine thread's own Abort is queued: the step that abort may end early is followed
    # by a drain that finds it.
    core = GatedCore()
    heard: list[tuple[str, bool, int]] = []
    engine_box: list[VLLMEngine] = []

    def abort_soon(request_id: str) -> None:
        heard.append((request_id, core.waiting, engine_box[0]._commands.qsize()))

    async with started(core, abort_soon=abort_soon) as engine:
        engine_box.append(engine)
        first = await engine.submit(request(max_tokens=100_000))
        second = await engine.submit(request(max_tokens=100_000))
        await first.__anext__()
        await second.__anext__()
        core.gated = True
        await settle(engine, core, lambda: core.waiting)  # a step is in flight
        await first.aclose()
        await first.aclose()  # once only
        assert heard == [(first.request_id, True, 1)]
        assert core.aborted == []  # the engine thread has not applied it yet
        core.gate.release()
        await settle(engine, core, lambda: engine.statistics().running == 1)
        assert core.aborted == core.added[:1]
        core.open()
        # A request that finished is not aborted, early or late.
        done = await engine.submit(request(max_tokens=2))
        assert [d.finish_reason async for d in done][-1] == "length"
        await done.aclose()
        await second.aclose()
        assert [request_id for request_id, _, _ in heard] == [first.request_id,
                                                              second.request_id]


async def test_close_from_a_cancelled_scope_still_aborts() -> None:
    core = FakeCore()
    async with started(core) as engine:
        stream = await engine.submit(request(max_tokens=100_000))
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.aclose()
        await settle(engine, core, lambda: core.aborted)
        assert core.aborted == core.added


async def test_engine_death_fails_every_stream() -> None:
    core = FakeCore(fail_at_step=3, fail_once_added=3)
    async with started(core) as engine:
        streams = [await engine.submit(request(max_tokens=100)) for _ in range(3)]
        for stream in streams:
            with pytest.raises(errors.EngineError, match="died"):
                async for _delta in stream:
                    pass
        stats = engine.statistics()
        assert not stats.healthy
        assert stats.running == 0
        with pytest.raises(errors.EngineUnavailable):
            await engine.submit(request())
        await settle(engine, core, lambda: core.shutdowns == 1)


async def test_refused_request_fails_alone() -> None:
    core = FakeCore(refuse_prompt_tokens=3)  # "<user> x <assistant>"
    async with started(core) as engine:
        refused = await engine.submit(request("x"))
        fine = await engine.submit(request("two words", max_tokens=3))
        with pytest.raises(errors.EngineError, match="refused"):
            await refused.__anext__()
        assert [d.finish_reason async for d in fine][-1] == "length"
        assert engine.statistics().healthy


async def test_aclose_fails_live_streams_and_is_idempotent() -> None:
    core = FakeCore()
    engine = fake_engine(core)
    await engine.start()
    stream = await engine.submit(request(max_tokens=100_000))
    await stream.__anext__()
    with trio.fail_after(5):
        await engine.aclose()
        await engine.aclose()
    with pytest.raises(errors.EngineError, match="shutting down"):
        await stream.__anext__()
    assert core.shutdowns == 1
    assert core.aborted == core.added
    with pytest.raises(errors.EngineUnavailable):
        await engine.submit(request())


async def test_aclose_is_bounded_when_a_step_hangs() -> None:
    core = FakeCore(hang=threading.Event())
    engine = fake_engine(core, stop_timeout=0.2)
    await engine.start()
    await engine.submit(request(max_tokens=10))
    await settle(engine, core, lambda: core.steps >= 1)
    with trio.fail_after(5):
        await engine.aclose()
    # The stuck step was released by shutting the core down from outside.
    assert core.shutdowns >= 1


async def test_start_failure_is_raised() -> None:
    def factory() -> Any:
        raise OSError("no model here")

    engine = VLLMEngine(factory, model_name="broken")
    with pytest.raises(OSError, match="no model here"):
        await engine.start()
    assert not engine.statistics().healthy
    with pytest.raises(errors.EngineUnavailable):
        await engine.submit(request())
    await engine.aclose()


async def test_context_length_is_checked_at_submit() -> None:
    core = FakeCore()
    async with started(core, max_model_len=20) as engine:
        with pytest.raises(errors.ContextLengthExceeded):
            await engine.submit(request("word " * 30))
        history = EngineRequest(
            request_id="h",
            messages=(
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "word " * 30},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "and now?"},
            ),
            sampling=SamplingOptions(max_tokens=100),
            truncate=True,
        )
        stream = await engine.submit(history)
        final = [d async for d in stream][-1]
        # Only the long user message went: "<system> be brief <assistant> ok <user> and
        # now? <assistant>" is 9 tokens, which leaves 11 for the output.
        assert final.prompt_tokens == 9
        assert final.output_tokens == 11
        assert core.added and not core.aborted


async def test_merged_deltas_keep_reasoning_text_and_calls_in_order() -> None:
    # A reader that lags gets merged deltas, read as reasoning, then text, then calls:
    # a delta that would come out of order starts a new one instead.
    stream = VLLMStream(fake_engine(FakeCore()), "r")
    call, arguments = ToolCallDelta(0, "f"), ToolCallDelta(0, arguments="{}")
    for delta in (EngineDelta(reasoning="think"), EngineDelta(text="a"),
                  EngineDelta(tool_calls=(call,)), EngineDelta(tool_calls=(arguments,)),
                  EngineDelta(text="b"), EngineDelta(reasoning="again"),
                  EngineDelta(text="c", finish_reason="stop")):
        stream._push(delta)
    read = [(d.reasoning, d.text, d.tool_calls, d.finish_reason) async for d in stream]
    assert read == [("think", "a", (call, arguments), None), ("", "b", (), None),
                    ("again", "c", (), "stop")]


async def test_a_waiting_reader_is_offered_each_delta_in_the_hand_over() -> None:
    """While the reader waits with nothing pending, each step's delta goes to its
    listener first (engine.base.ListenedStream); what it declines (here the finish) is
    read as usual. Each delta reaches the reader once, in order, by one path."""
    core = FakeCore(step_delay=0.005)
    async with started(core) as engine:
        stream = await engine.submit(request(max_tokens=6))
        assert isinstance(stream, ListenedStream)
        seen: list[tuple[str, EngineDelta]] = []

        def take(delta: EngineDelta) -> bool:
            if delta.finish_reason is not None:
                return False
            seen.append(("taken", delta))
            return True

        stream.listen(take)
        async for delta in stream:
            seen.append(("read", delta))
        assert "".join(d.text for _, d in seen) == "".join(f"t{i} " for i in range(6))
        assert [d.output_tokens for _, d in seen][-1] == 6
        assert seen[-1][0] == "read" and seen[-1][1].finish_reason == "length"
        assert any(path == "taken" for path, _ in seen)
        assert core.aborted == []
