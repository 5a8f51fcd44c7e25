"""Aborts that reach vLLM's engine core during a step (``LLMEngineCore.abort_soon``).

With the core in its own process (vLLM's ``SyncMPClient``, as the server runs it), the
bridge sends the core an abort from the Trio thread while the engine thread may be
waiting in ``step()``. These tests drive :class:`LLMEngineCore` over a real
multiprocess ``LLMEngine`` (default model, eager) from the test's threads and check
what only vLLM can show: the core stops the request on its own, before the engine
thread's ``abort_request``; and a step that waits on a core whose every request was
aborted still returns. The bridge's side (the order of the two aborts) is in
``test_bridge.py``, over a fake core.

The engine is built with ``enable_multiprocessing=True`` rather than through the
environment: once an in-process core has started in this test process (the session's
``real_engine``), vLLM caches its environment variables.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from tests.engine.harness import REAL_ENGINE_FLAGS
from trio_responses.engine.vllm.core import LLMEngineCore

pytestmark = pytest.mark.engine

# Steps read after the early abort: the core may have run ahead of the reader by a few
# steps (their outputs still name the request), then it must name it no more.
STEPS_AFTER = 40


@pytest.fixture(scope="module")
def mp_core() -> Iterator[tuple[LLMEngineCore, Any]]:
    pytest.importorskip("vllm")
    from vllm.v1.engine.llm_engine import LLMEngine

    from trio_responses.engine.vllm.args import parse_vllm_args

    engine_args, _options = parse_vllm_args(None, REAL_ENGINE_FLAGS)
    engine = LLMEngine.from_engine_args(engine_args, enable_multiprocessing=True)
    core = LLMEngineCore(engine)
    try:
        assert core.aborts_early, "expected vLLM's multiprocess client"
        yield core, engine
    finally:
        core.shutdown()
        # vLLM closes the client's sockets (the output thread its own) but leaves its ZMQ
        # context to the garbage collector, whose "Unclosed context" ResourceWarning
        # would then fail a later test: destroy it once no thread uses a socket.
        client = engine.engine_core
        client.output_queue_thread.join(30)
        if not client.output_queue_thread.is_alive():
            client.ctx.destroy(linger=0)


def add(core: LLMEngineCore, engine: Any, request_id: str) -> None:
    from vllm import SamplingParams

    tokenizer = engine.get_tokenizer()
    ids = tokenizer.encode("Write a long story about a lighthouse keeper and the sea.")
    params = SamplingParams(max_tokens=1500, ignore_eos=True, temperature=0)
    core.add_request(request_id, {"prompt_token_ids": ids}, params, 0)


def step_names(core: LLMEngineCore) -> set[str]:
    return {output.request_id for output in core.step()}


def step_until(core: LLMEngineCore, *request_ids: str) -> None:
    """Step until every one of ``request_ids`` has produced output (bounded)."""
    waiting = set(request_ids)
    for _ in range(50):
        waiting -= step_names(core)
        if not waiting:
            return
    raise AssertionError(f"no output for {waiting}")


def test_the_core_stops_a_request_before_the_engine_thread_aborts_it(
    mp_core: tuple[LLMEngineCore, Any],
) -> None:
    core, engine = mp_core
    add(core, engine, "early-a")
    add(core, engine, "early-b")
    step_until(core, "early-a", "early-b")
    core.abort_soon("early-a")
    named = [step_names(core) for _ in range(STEPS_AFTER)]
    # The first steps may still carry early-a (the core ran ahead; the step in flight);
    # from the first step without it, the core runs early-b alone...
    first_without = next(i for i, names in enumerate(named) if names == {"early-b"})
    assert first_without < STEPS_AFTER // 2
    assert all("early-a" not in names for names in named[first_without:])
    assert sum("early-b" in names for names in named[first_without:]) >= STEPS_AFTER // 4
    # ...while this side (the engine thread, which has not seen its Abort command) still
    # counts early-a as unfinished.
    assert core.get_num_unfinished_requests() == 2
    core.abort_request(["early-a", "early-b"])
    assert not core.has_unfinished_requests()


def test_a_step_in_flight_when_every_request_is_aborted_returns(
    mp_core: tuple[LLMEngineCore, Any],
) -> None:
    core, engine = mp_core
    add(core, engine, "only")
    step_until(core, "only")
    # A thread steps as the engine thread does; the abort comes from this one, most
    # likely while that thread waits in step(). With nothing left, the core sends no
    # more outputs: only the empty one abort_soon puts on the queue ends that wait.
    returned = threading.Event()

    def stepper() -> None:
        while core.has_unfinished_requests():
            names = step_names(core)
            if "only" not in names:
                break  # the empty output abort_soon put there, or the core stopped
        returned.set()

    thread = threading.Thread(target=stepper, name="test-stepper", daemon=True)
    thread.start()
    core.abort_soon("only")

    async def wait() -> None:
        with trio.fail_after(120):  # a hang guard, not a measurement
            await trio.to_thread.run_sync(returned.wait)

    trio.run(wait)
    thread.join()
    core.abort_request(["only"])
    assert not core.has_unfinished_requests()
