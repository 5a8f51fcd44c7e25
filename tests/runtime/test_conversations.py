"""Responses on a conversation, in process under MockClock (scripted engine, in-memory
store): one response at a time per conversation, in arrival order, each reading the turns
before it; the bounded wait and its 409; what each final status appends; the lock let go
on every path (refusals, cancellation, a waiter that leaves)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.fakes import RecordingStore
from tests.support.service import open_service
from trio_responses.errors import APIError, Conflict, InvalidRequest, NotFound
from trio_responses.protocol.request import decode_create_request
from trio_responses.runtime.conversations import ConversationLockStatistics
from trio_responses.runtime.run import ResponseRun
from trio_responses.runtime.service import ResponseService

OWNER = "owner-a"
IDLE = ConversationLockStatistics(held=0, waiting=0)


def request(conversation: str, **fields: Any) -> Any:
    return decode_create_request(json.dumps(
        {"model": "scripted", "conversation": conversation, **fields}).encode())


async def new_conversation(service: ResponseService, *texts: str) -> str:
    items = [{"type": "message", "role": "user", "status": "completed",
              "content": [{"type": "input_text", "text": text}]} for text in texts]
    created = await service.conversations.create(items, {}, OWNER)
    return str(created["id"])


async def texts(service: ResponseService, conversation: str) -> list[str]:
    return ["".join(part["text"] for part in item["content"])
            for item in await service.conversations.history(conversation, OWNER)
            if item["type"] == "message"]


async def run_to_end(service: ResponseService, body: Any) -> ResponseRun:
    run = await service.create(body, owner=OWNER, stream=False)
    await run.done.wait()
    return run


async def test_responses_on_one_conversation_run_in_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0) as (service, engine):
        conversation = await new_conversation(service, "hello")
        runs: list[ResponseRun] = []

        async def create(text: str) -> None:
            runs.append(await run_to_end(service, request(conversation, input=text)))

        async with trio.open_nursery() as nursery:
            for text in ("one", "two", "three"):
                nursery.start_soon(create, text)
                await trio.testing.wait_all_tasks_blocked()
            # The first runs; the other two wait for it, in the order they came.
            assert service.conversations.locks.statistics() == ConversationLockStatistics(
                held=1, waiting=2)
        assert [run.response["status"] for run in runs] == ["completed"] * 3
        assert await texts(service, conversation) == [
            "hello", "one", "You said: one", "two", "You said: two", "three",
            "You said: three"]
        # Each read the turns before it: the last prompt is the whole conversation.
        prompts = [[m["content"] for m in r.messages] for r in engine.requests]
        assert prompts[-1] == (await texts(service, conversation))[:-1]
        assert len(prompts[0]) == 2 and len(prompts[1]) == 4
        assert service.conversations.locks.statistics() == IDLE


async def test_a_request_waits_at_most_the_lock_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), conversation_lock_timeout_seconds=30
                            ) as (service, _):
        conversation = await new_conversation(service)
        stalled = await service.create(request(conversation, input="[[stall]]",
                                               background=True), owner=OWNER, stream=False)
        started = trio.current_time()
        with pytest.raises(Conflict) as locked:
            await service.create(request(conversation, input="next"), owner=OWNER,
                                 stream=False)
        assert trio.current_time() - started == pytest.approx(30)
        assert (locked.value.code, locked.value.param) == ("conversation_locked",
                                                           "conversation")
        # Retryable: the SDK honours retry-after and retries a 409 unless told not to.
        assert locked.value.headers["x-should-retry"] == "true"
        assert locked.value.headers["retry-after"] == "1"
        # Items appends wait for the same lock.
        with pytest.raises(Conflict):
            await service.conversations.add_items(conversation, OWNER, [
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "x"}], "status": "completed"}], ())
        stalled.end("cancel")
        await stalled.done.wait()
        # Cancelled: its turn is not appended, and the next one goes at once.
        assert await texts(service, conversation) == []
        started = trio.current_time()
        await run_to_end(service, request(conversation, input="next"))
        assert trio.current_time() == started
        assert await texts(service, conversation) == ["next", "You said: next"]
        assert service.conversations.locks.statistics() == IDLE


@pytest.mark.parametrize(("fields", "status", "appended"), [
    ({"input": "please [[fail]]"}, "failed", []),
    ({"input": "one two three four", "max_output_tokens": 2}, "incomplete",
     ["one two three four", "You said:"]),
    ({"input": "not kept", "store": False}, "completed", ["not kept", "You said: not kept"]),
    ({"input": "in the background", "background": True}, "completed",
     ["in the background", "You said: in the background"]),
])
async def test_what_each_ending_appends(
    autojump_clock: trio.testing.MockClock, fields: dict[str, Any], status: str,
    appended: list[str],
) -> None:
    store = RecordingStore()
    async with open_service(store) as (service, _):
        conversation = await new_conversation(service, "before")
        run = await run_to_end(service, request(conversation, **fields))
        assert run.response["status"] == status
        assert run.response["conversation"] == {"id": conversation}
        assert await texts(service, conversation) == ["before", *appended]
        items = await service.conversations.history(conversation, OWNER)
        if appended:
            # The response's own items, with their ids and statuses as it showed them.
            assert items[2:] == run.response["output"]
            assert items[2]["status"] == ("incomplete" if status == "incomplete"
                                          else "completed")
        if fields.get("store") is False:
            assert run.id not in store.rows
        elif appended:  # the input item as the response's input_items list it
            assert store.rows[run.id].input_items[0] == items[1]
        assert service.conversations.locks.statistics() == IDLE


async def test_refusals_let_the_conversation_go(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), max_conversation_items=6) as (service, engine):
        engine.max_model_len = 40
        conversation = await new_conversation(service, "hello")
        refusals: list[tuple[dict[str, Any], type[APIError], str | None]] = [
            ({"input": "word " * 60}, InvalidRequest, "context_length_exceeded"),
            ({"input": [{"id": "msg_x", "role": "user", "content": "a"},
                        {"id": "msg_x", "role": "user", "content": "b"}]},
             InvalidRequest, "duplicate_item_id"),
            ({"input": "x", "model": "other"}, NotFound, "model_not_found"),
        ]
        for fields, error, code in refusals:
            with pytest.raises(error) as refused:
                await service.create(request(conversation, **fields), owner=OWNER,
                                     stream=False)
            assert refused.value.code == code
            assert service.conversations.locks.statistics() == IDLE
        # An id the conversation already has is refused too.
        (first,) = await service.conversations.history(conversation, OWNER)
        with pytest.raises(InvalidRequest) as duplicate:
            await service.create(request(conversation, input=[
                {"id": first["id"], "role": "user", "content": "again"}]), owner=OWNER,
                stream=False)
        assert duplicate.value.param == "input[0].id"
        # Truncation drops the oldest history from the prompt, never from the store.
        long_history = request(conversation, input="word " * 20, truncation="auto")
        # Room for the whole echo (the engine clips its output to what the context
        # leaves, as vLLM does), then the small context again for the turn after.
        engine.max_model_len = 60
        await run_to_end(service, long_history)
        engine.max_model_len = 40
        last = await run_to_end(service, request(conversation, input="last",
                                                 truncation="auto"))
        # hello (3 words with the template's 2), the words (22), their echo (24), last (3)
        # is 52 > 40: the two oldest go, and the prompt is 27 words.
        assert [m["content"] for m in engine.requests[-1].messages] == [
            "You said: " + "word " * 19 + "word", "last"]
        assert last.response["usage"]["input_tokens"] == 27
        assert len(await service.conversations.history(conversation, OWNER)) == 5
        # Full: 5 items, and a response needs room for its input and one output item.
        with pytest.raises(InvalidRequest) as full:
            await service.create(request(conversation, input="more"), owner=OWNER,
                                 stream=False)
        assert (full.value.code, full.value.param) == ("conversation_full", "conversation")
        assert service.conversations.locks.statistics() == IDLE


async def test_a_waiter_that_leaves_and_a_conversation_deleted_mid_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0) as (service, _):
        conversation = await new_conversation(service)
        first = await service.create(request(conversation, input="a b c d e"), owner=OWNER,
                                     stream=False)
        with trio.move_on_after(1):  # a client that gives up while it waits
            await service.create(request(conversation, input="gone"), owner=OWNER,
                                 stream=False)
        assert service.conversations.locks.statistics() == ConversationLockStatistics(
            held=1, waiting=0)
        # Deleted while the first response runs: it still completes; nothing is appended.
        await service.conversations.delete(conversation, OWNER)
        await first.done.wait()
        assert first.response["status"] == "completed"
        with pytest.raises(NotFound):
            await service.conversations.history(conversation, OWNER)
        assert service.conversations.locks.statistics() == IDLE
