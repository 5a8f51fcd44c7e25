"""A long ``previous_response_id`` chain's prompt is built in a worker thread: while one
is held in its thread, the loop still serves other requests; and a request waiting for
one of the (bounded) prompt threads is cancelled at once, leaving no work queued.

Real clock (the build runs in a thread); no timer is asserted: the held build waits on
an event the test sets, and the test only asserts what completed while it was held."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.fakes import RecordingStore
from tests.support.service import open_service
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime import service as service_module
from trio_responses.runtime.sealing import Sealer
from trio_responses.runtime.service import (
    PROMPT_THREAD_MIN_ITEMS,
    PROMPT_THREADS,
    ResponseService,
)

OWNER = "owner-a"
OTHER = "owner-b"
# Each turn adds its input and its output to the history.
TURNS = PROMPT_THREAD_MIN_ITEMS // 2 + 4
HOLD_LIMIT = 30.0  # a safety net so a regression fails instead of hanging


def request(**fields: Any) -> Any:
    return decode_create_request(json.dumps({"model": "scripted", **fields}).encode())


async def long_chain(service: ResponseService) -> str:
    previous = None
    for n in range(TURNS):
        fields: dict[str, Any] = {"input": f"turn {n} " + "lorem ipsum " * 20}
        if previous is not None:
            fields["previous_response_id"] = previous
        run = await service.create(request(**fields), owner=OWNER, stream=False)
        await run.done.wait()
        previous = run.id
    assert previous is not None
    return previous


class HeldBuild:
    """Stands in for ``prompt_items``: a long history's build waits until released
    (on a threading.Event: if it ran on the Trio thread, the loop would stop with it)."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []
        self.real = service_module.prompt_items

    def __call__(self, sealer: Sealer, history: Sequence[Mapping[str, Any]],
                 items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if len(history) >= PROMPT_THREAD_MIN_ITEMS:
            self.threads.append(threading.current_thread())
            self.entered.release()
            assert self.release.wait(HOLD_LIMIT), "the held build was never released"
        return self.real(sealer, history, items)

    async def wait_entered(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.acquire, True, HOLD_LIMIT)


async def test_other_requests_complete_while_a_long_prompt_is_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_service(RecordingStore()) as (service, _):
        last = await long_chain(service)
        small = await service.create(request(input="hi"), owner=OTHER, stream=False)
        await small.done.wait()
        expected = await service.count_input_tokens(
            request(input="how long?", previous_response_id=last), OWNER)

        held = HeldBuild()
        monkeypatch.setattr(service_module, "prompt_items", held)
        counted: list[int] = []

        async def count() -> None:
            counted.append(await service.count_input_tokens(
                request(input="how long?", previous_response_id=last), OWNER))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count)
            await held.wait_entered()
            # The build is held in its thread: the loop still reads, and even creates
            # and finishes a whole response for another key.
            got = await service.retrieve(small.id, OTHER)
            assert got["status"] == "completed"
            another = await service.create(request(input="still there?"), owner=OTHER,
                                           stream=False)
            await another.done.wait()
            assert counted == []
            held.release.set()

        assert counted == [expected]
        assert held.threads and held.threads[0] is not threading.main_thread()


async def test_a_cancelled_request_leaves_no_prompt_work_queued(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_service(RecordingStore()) as (service, _):
        last = await long_chain(service)
        held = HeldBuild()
        monkeypatch.setattr(service_module, "prompt_items", held)
        body = request(input="how long?", previous_response_id=last)
        limiter = service._prompt_threads
        done: list[int] = []
        cancelled: list[bool] = []

        async def count(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                done.append(await service.count_input_tokens(body, OWNER))
            cancelled.append(scope.cancelled_caught)

        async with trio.open_nursery() as nursery:
            for _ in range(PROMPT_THREADS):
                nursery.start_soon(count)
                await held.wait_entered()
            assert limiter.borrowed_tokens == PROMPT_THREADS
            # One more waits for a thread; then its client goes away.
            waiter = await nursery.start(count)
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().tasks_waiting == 1
            waiter.cancel()
            await trio.testing.wait_all_tasks_blocked()
            # It left at once, without a thread: only the held builds still run.
            assert cancelled == [True]
            assert limiter.statistics().tasks_waiting == 0
            assert limiter.borrowed_tokens == PROMPT_THREADS
            held.release.set()
        assert len(done) == PROMPT_THREADS and len(set(done)) == 1
        assert len(held.threads) == PROMPT_THREADS
        assert limiter.borrowed_tokens == 0
