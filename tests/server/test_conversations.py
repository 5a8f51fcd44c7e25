"""The Conversations API over HTTP, driven by the official SDK in strict mode: every
endpoint (create, retrieve, update, delete; items add, list in both orders with cursors,
retrieve, delete; include), ``conversation=`` on create (plain, streamed, background,
``store: false``), ownership between two keys, the limits, concurrent clients on one
conversation (served in turn), the lock timeout's 409, and truncation of a long history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.server.helpers import MODEL, on_server
from tests.support.errors import assert_sdk_error
from tests.support.events import check_stream, sdk_events
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine

KEY_A, KEY_B = "key-a", "key-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    engine = ScriptedEngine(token_delay=0.002, model_name=MODEL)
    with serve_scripted(tmp_path_factory, engine, api_keys=(KEY_A, KEY_B)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[openai.OpenAI]:
    with strict_sdk(server, api_key=KEY_A) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Small limits, a short lock timeout, and a model with a 60-word context."""
    engine = ScriptedEngine(token_delay=0.002, model_name=MODEL, max_model_len=60)
    with serve_scripted(tmp_path_factory, engine, max_conversation_items=12,
                        max_conversation_item_bytes=400,
                        conversation_lock_timeout_seconds=0.3) as running:
        yield running


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def texts(client: openai.OpenAI, conversation_id: str) -> list[str]:
    """The text of every message of the conversation, oldest first."""
    out = []
    for item in client.conversations.items.list(conversation_id, order="asc", limit=100):
        if item.type == "message":
            out.append("".join(getattr(part, "text", "") for part in item.content))
    return out


def prompt_of(server: ServerThread, response_id: str) -> list[str]:
    engine = engine_of(server)
    (request,) = on_server(server, lambda: [r for r in engine.requests
                                            if r.request_id == response_id])
    return [str(m["content"]) for m in request.messages]


def test_create_retrieve_update_delete(client: openai.OpenAI) -> None:
    created = client.conversations.create(items=[user("hi")], metadata={"topic": "demo"})
    assert created.id.startswith("conv_") and created.object == "conversation"
    assert created.metadata == {"topic": "demo"}
    assert abs(created.created_at - time.time()) < 60
    assert client.conversations.retrieve(created.id) == created
    updated = client.conversations.update(created.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"} and updated.created_at == created.created_at
    assert client.conversations.retrieve(created.id).metadata == {"topic": "other"}
    assert client.conversations.create().metadata == {}  # nothing at all is fine too
    deleted = client.conversations.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True,
                                                             "conversation.deleted")
    for call in (lambda: client.conversations.retrieve(created.id),
                 lambda: client.conversations.delete(created.id),
                 lambda: client.conversations.items.list(created.id)):
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert_sdk_error(missing.value, 404, param="conversation_id")


def test_items_add_list_retrieve_delete(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=[user(f"first {n}") for n in range(5)])
    added = client.conversations.items.create(conversation.id, items=[
        user(f"then {n}") for n in range(20)])
    assert len(added.data) == 20 and added.first_id == added.data[0].id
    assert added.last_id == added.data[-1].id and not added.has_more
    everything = [*(f"first {n}" for n in range(5)), *(f"then {n}" for n in range(20))]

    # Cursor pages, both orders: the SDK follows has_more / last_id with `after`.
    ascending = list(client.conversations.items.list(conversation.id, order="asc", limit=7))
    descending = list(client.conversations.items.list(conversation.id, order="desc", limit=7))
    assert [i.content[0].text for i in ascending] == everything  # type: ignore[union-attr]
    assert [i.id for i in descending] == [i.id for i in reversed(ascending)]
    page = client.conversations.items.list(conversation.id, limit=3)  # desc by default
    assert [i.id for i in page.data] == [i.id for i in descending[:3]]
    assert page.has_more and page.last_id == descending[2].id
    after = client.conversations.items.list(conversation.id, limit=3, after=page.last_id)
    assert [i.id for i in after.data] == [i.id for i in descending[3:6]]
    # Item ids are the server's, one per item.
    assert len({i.id for i in ascending}) == 25
    assert all(i.id.startswith("msg_") for i in ascending)

    item = client.conversations.items.retrieve(ascending[3].id, conversation_id=conversation.id)
    assert item == ascending[3]
    shown = client.conversations.items.delete(ascending[3].id, conversation_id=conversation.id)
    assert shown.id == conversation.id and shown.object == "conversation"
    with pytest.raises(openai.NotFoundError) as gone:
        client.conversations.items.retrieve(ascending[3].id, conversation_id=conversation.id)
    assert_sdk_error(gone.value, 404, param="item_id")
    with pytest.raises(openai.BadRequestError) as cursor:
        client.conversations.items.list(conversation.id, after=ascending[3].id)
    assert_sdk_error(cursor.value, 400, param="after")
    assert texts(client, conversation.id) == everything[:3] + everything[4:]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.conversations.items.create(conversation.id, items=[user("x")] * 21)
    assert_sdk_error(too_many.value, 400, param="items", code="array_above_max_length")


def test_conversation_on_create_in_every_mode(client: openai.OpenAI, server: ServerThread
                                              ) -> None:
    conversation = client.conversations.create(items=[user("hello")])
    first = client.responses.create(model=MODEL, input="one", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert prompt_of(server, first.id) == ["hello", "one"]

    with client.responses.stream(model=MODEL, input="two",
                                 conversation={"id": conversation.id}) as stream:
        events = sdk_events(stream)
        second = stream.get_final_response()
        # Seen finished: its turn is already in the conversation.
        assert texts(client, conversation.id)[-2:] == ["two", "You said: two"]
    check_stream(events)
    assert events[0]["response"]["conversation"] == {"id": conversation.id}

    queued = client.responses.create(model=MODEL, input="three", background=True,
                                     conversation=conversation.id)
    wait_until(lambda: client.responses.retrieve(queued.id).status == "completed")
    assert texts(client, conversation.id)[-2:] == ["three", "You said: three"]

    unstored = client.responses.create(model=MODEL, input="four", store=False,
                                       conversation=conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    assert texts(client, conversation.id) == [
        "hello", "one", "You said: one", "two", "You said: two", "three", "You said: three",
        "four", "You said: four"]
    assert prompt_of(server, unstored.id) == texts(client, conversation.id)[:-1]
    # The output items keep the ids the responses showed.
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert items[-1].id == unstored.output[0].id and items[4].id == second.output[0].id
    # The response's input items and the conversation's are the same items.
    (listed,) = client.responses.input_items.list(first.id).data
    assert listed.id == items[1].id
    # input_tokens counts the conversation too.
    counted = client.responses.input_tokens.count(model=MODEL, input="five",
                                                  conversation=conversation.id)
    alone = client.responses.input_tokens.count(model=MODEL, input="five")
    assert counted.input_tokens > alone.input_tokens


def test_logprobs_are_listed_when_included(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    response = client.responses.create(model=MODEL, input="a b", top_logprobs=2,
                                       include=["message.output_text.logprobs"],
                                       conversation=conversation.id)
    output = response.output[0]
    assert output.type == "message" and output.content[0].logprobs  # type: ignore[union-attr]
    plain = client.conversations.items.retrieve(output.id, conversation_id=conversation.id)
    assert plain.content[0].logprobs == []  # type: ignore[union-attr]
    included = client.conversations.items.retrieve(
        output.id, conversation_id=conversation.id, include=["message.output_text.logprobs"])
    assert (included.id, included.content) == (output.id, output.content)
    listed = client.conversations.items.list(conversation.id,
                                             include=["message.output_text.logprobs"])
    assert listed.data[0].content == output.content  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as bad:
        client.conversations.items.list(conversation.id, include=["nope"])  # type: ignore[list-item]
    assert_sdk_error(bad.value, 400, param="include")


def test_another_key_finds_nothing(client: openai.OpenAI, server: ServerThread) -> None:
    conversation = client.conversations.create(items=[user("mine")])
    item_id = client.conversations.items.list(conversation.id).data[0].id
    with strict_sdk(server, api_key=KEY_B) as other:
        calls = [
            lambda: other.conversations.retrieve(conversation.id),
            lambda: other.conversations.update(conversation.id, metadata={"x": "y"}),
            lambda: other.conversations.delete(conversation.id),
            lambda: other.conversations.items.list(conversation.id),
            lambda: other.conversations.items.create(conversation.id, items=[user("x")]),
            lambda: other.conversations.items.retrieve(item_id,
                                                       conversation_id=conversation.id),
            lambda: other.conversations.items.delete(item_id,
                                                     conversation_id=conversation.id),
            lambda: other.responses.create(model=MODEL, input="x",
                                           conversation=conversation.id),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError):
                call()
    assert texts(client, conversation.id) == ["mine"]
    assert client.conversations.retrieve(conversation.id).metadata == {}


def test_deleting_a_conversation_keeps_its_responses(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    response = client.responses.create(model=MODEL, input="kept", conversation=conversation.id)
    client.conversations.delete(conversation.id)
    assert client.responses.retrieve(response.id).output_text == "You said: kept"
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.create(model=MODEL, input="x", conversation=conversation.id)
    assert_sdk_error(gone.value, 404, param="conversation", code="conversation_not_found")


def test_concurrent_clients_are_served_in_turn(server: ServerThread) -> None:
    """Eight strict SDK clients on one conversation at once, half of them streaming:
    every one completes, each turn lands whole (its input, then its output), and each
    response saw every turn that landed before it."""
    with strict_sdk(server, api_key=KEY_A) as sdk:
        conversation = sdk.conversations.create(items=[user("start")])
    responses: dict[str, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def turn(n: int) -> None:
        try:
            with strict_sdk(server, api_key=KEY_A) as sdk:
                barrier.wait()
                if n % 2:
                    with sdk.responses.stream(model=MODEL, input=f"client {n} " * 5,
                                              conversation=conversation.id) as stream:
                        check_stream(sdk_events(stream))
                        responses[f"client {n}"] = stream.get_final_response()
                else:
                    responses[f"client {n}"] = sdk.responses.create(
                        model=MODEL, input=f"client {n} " * 5, conversation=conversation.id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert {r.status for r in responses.values()} == {"completed"}
    with strict_sdk(server, api_key=KEY_A) as sdk:
        history = texts(sdk, conversation.id)
    assert len(history) == 1 + 2 * 8 and history[0] == "start"
    for position in range(1, len(history), 2):
        asked = history[position]
        assert history[position + 1] == "You said: " + asked.strip()
        response = responses[" ".join(asked.split()[:2])]
        assert prompt_of(server, response.id) == history[:position + 1]


def test_a_busy_conversation_is_409_after_the_lock_timeout(tight: ServerThread) -> None:
    with strict_sdk(tight) as client:
        conversation = client.conversations.create()
        stalled = client.responses.create(model=MODEL, input="[[stall]]", background=True,
                                          conversation=conversation.id)
        wait_until(lambda: client.responses.retrieve(stalled.id).status == "in_progress")
        started = time.monotonic()
        with pytest.raises(openai.ConflictError) as locked:
            client.responses.create(model=MODEL, input="next", conversation=conversation.id)
        assert time.monotonic() - started >= 0.3
        assert_sdk_error(locked.value, 409, param="conversation", code="conversation_locked")
        assert locked.value.response.headers["x-should-retry"] == "true"
        with pytest.raises(openai.ConflictError):
            client.conversations.items.create(conversation.id, items=[user("x")])
        client.responses.cancel(stalled.id)
        # The SDK's own retry (it honours retry-after on a 409) would now succeed at once.
        after = client.responses.create(model=MODEL, input="next", conversation=conversation.id)
        assert after.output_text == "You said: next"
        assert texts(client, conversation.id) == ["next", "You said: next"]


def test_limits(tight: ServerThread) -> None:
    with strict_sdk(tight) as client:
        with pytest.raises(openai.BadRequestError) as large:
            client.conversations.create(items=[user("ok"), user("x" * 500)])
        assert_sdk_error(large.value, 400, param="items[1]", code="item_too_large")
        conversation = client.conversations.create(items=[user(f"{n}") for n in range(8)])
        with pytest.raises(openai.BadRequestError) as big_input:
            client.responses.create(model=MODEL, input=[user("ok"), user("y" * 500)],
                                    conversation=conversation.id)
        assert_sdk_error(big_input.value, 400, param="input[1]", code="item_too_large")
        client.responses.create(model=MODEL, input="nine", conversation=conversation.id)
        # 10 items now; the limit is 12.
        with pytest.raises(openai.BadRequestError) as full:
            client.conversations.items.create(conversation.id, items=[user("a")] * 3)
        assert_sdk_error(full.value, 400, param="items", code="conversation_full")
        client.conversations.items.create(conversation.id, items=[user("a"), user("b")])
        assert len(texts(client, conversation.id)) == 12
        with pytest.raises(openai.BadRequestError) as no_room:
            client.responses.create(model=MODEL, input="more", conversation=conversation.id)
        assert_sdk_error(no_room.value, 400, param="conversation", code="conversation_full")


def test_truncation_drops_the_oldest_history_from_the_prompt(tight: ServerThread) -> None:
    with strict_sdk(tight) as client:
        conversation = client.conversations.create(items=[
            user(f"old fact {n} " + "padding " * 4) for n in range(6)])
        with pytest.raises(openai.BadRequestError) as too_long:
            client.responses.create(model=MODEL, input="question", conversation=conversation.id)
        assert_sdk_error(too_long.value, 400, param="input", code="context_length_exceeded")
        answer = client.responses.create(model=MODEL, input="question", truncation="auto",
                                         conversation=conversation.id)
        assert answer.status == "completed" and answer.output_text == "You said: question"
        prompt = prompt_of(tight, answer.id)
        assert prompt[-1] == "question" and prompt[0].startswith("old fact ")
        assert "old fact 0" not in prompt[0] and len(prompt) < 7
        assert answer.usage is not None and answer.usage.input_tokens < 60
        # Dropped from the prompt only: the conversation keeps every item.
        assert len(texts(client, conversation.id)) == 8
