"""Every replica serves every stored response: three server processes on loopback
sharing one PostgreSQL database, a request to one, the next to another, with the strict
SDK — retrieve, input_items, previous_response_id chains, input_tokens, delete,
conversations, and a finished background response's replay."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import openai
import pytest

from tests.reliability.procs import ServerProcess
from tests.support.events import check_stream, joined_text, sdk_events
from tests.support.sdk import strict_sdk
from tests.support.waiting import wait_until

MODEL = "scripted"


@pytest.fixture
def clients(replicas: list[ServerProcess]) -> Iterator[list[openai.OpenAI]]:
    with ExitStack() as stack:
        yield [stack.enter_context(strict_sdk(r.base_url + "/v1")) for r in replicas]


def test_retrieve_items_chain_tokens_and_delete_across_replicas(
        clients: list[openai.OpenAI]) -> None:
    a, b, c = clients
    first = a.responses.create(model=MODEL, input="one")
    for other in (b, c):
        got = other.responses.retrieve(first.id)
        assert got.model_dump() == a.responses.retrieve(first.id).model_dump()
        assert got.output_text == "You said: one"
    items = c.responses.input_items.list(first.id)
    assert [item.model_dump()["content"][0]["text"] for item in items.data] == ["one"]

    # The chain continues on whichever replica the next request reaches.
    second = b.responses.create(model=MODEL, input="two", previous_response_id=first.id)
    third = c.responses.create(model=MODEL, input="three", previous_response_id=second.id)
    assert third.status == "completed" and third.previous_response_id == second.id
    with_history = a.responses.input_tokens.count(model=MODEL, input="four",
                                                  previous_response_id=third.id)
    alone = b.responses.input_tokens.count(model=MODEL, input="four")
    assert with_history.input_tokens > alone.input_tokens
    assert third.usage is not None and second.usage is not None
    assert third.usage.input_tokens > second.usage.input_tokens

    # Deleted on one replica: gone from all, and the chain through it is broken.
    assert c.responses.delete(second.id) is None
    for other in (a, b, c):
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(second.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=MODEL, input="x", previous_response_id=third.id)


def test_conversations_across_replicas(clients: list[openai.OpenAI]) -> None:
    a, b, c = clients
    conversation = a.conversations.create(
        items=[{"type": "message", "role": "user", "content": "hello"}])
    b.responses.create(model=MODEL, input="on b", conversation=conversation.id)
    c.responses.create(model=MODEL, input="on c", conversation=conversation.id)
    texts = [item.model_dump()["content"][0]["text"]
             for item in a.conversations.items.list(conversation.id, order="asc").data]
    assert texts == ["hello", "on b", "You said: on b", "on c", "You said: on c"]
    assert c.conversations.delete(conversation.id).deleted
    with pytest.raises(openai.NotFoundError):
        b.conversations.retrieve(conversation.id)


def test_finished_background_response_is_replayed_by_any_replica(
        clients: list[openai.OpenAI]) -> None:
    a, b, c = clients
    created = a.responses.create(model=MODEL, input="in the background", background=True)
    wait_until(lambda: b.responses.retrieve(created.id).status == "completed", timeout=20,
               what="completed, seen from another replica")
    with c.responses.retrieve(created.id, stream=True) as stream:
        events = sdk_events(stream)
    check_stream(events)
    assert joined_text(events) == "You said: in the background"
    with b.responses.retrieve(created.id, stream=True, starting_after=3) as stream:
        resumed = sdk_events(stream)
    assert [e["sequence_number"] for e in resumed] == [
        e["sequence_number"] for e in events if e["sequence_number"] > 3]
