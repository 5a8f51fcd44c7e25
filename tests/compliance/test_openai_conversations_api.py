"""Compliance suite, part two: the Conversations API (``/v1/conversations``) and
``conversation`` on create. Run it as part one (see test_openai_responses_api.py); the
same fixtures, the same rules: the official SDK in strict mode, assertions on the
protocol (objects, ids, order, pages, error shapes), never on what the model writes.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.compliance.deployment import Deployment
from tests.support.errors import assert_openai_error
from tests.support.events import sdk_events
from tests.support.waiting import wait_until

FINISHED = {"completed", "incomplete"}
SHORT = 32


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def item_ids(sdk: openai.OpenAI, conversation_id: str) -> list[str]:
    return [item.id for item in sdk.conversations.items.list(conversation_id, order="asc")]


@pytest.fixture
def conversation(sdk: openai.OpenAI) -> Any:
    created = sdk.conversations.create(items=[user("My name is Ada.")],
                                       metadata={"suite": "compliance"})
    yield created
    try:
        sdk.conversations.delete(created.id)
    except openai.NotFoundError:
        pass


def test_create_retrieve_update_delete(sdk: openai.OpenAI, conversation: Any) -> None:
    assert conversation.object == "conversation"
    assert conversation.metadata == {"suite": "compliance"}
    assert sdk.conversations.retrieve(conversation.id).id == conversation.id
    updated = sdk.conversations.update(conversation.id, metadata={"suite": "updated"})
    assert updated.metadata == {"suite": "updated"}
    deleted = sdk.conversations.delete(conversation.id)
    assert deleted.deleted and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conversation.id)


def test_items_are_added_listed_in_both_orders_and_deleted(sdk: openai.OpenAI,
                                                          conversation: Any) -> None:
    added = sdk.conversations.items.create(conversation.id, items=[
        user("one"), user("two"), {"type": "message", "role": "assistant",
                                   "content": "three"}])
    assert len(added.data) == 3 and added.first_id == added.data[0].id
    ids = item_ids(sdk, conversation.id)
    assert ids[1:] == [item.id for item in added.data] and len(set(ids)) == 4
    # Pages of two, followed by the SDK through has_more and last_id.
    assert [i.id for i in sdk.conversations.items.list(conversation.id, order="asc",
                                                       limit=2)] == ids
    assert [i.id for i in sdk.conversations.items.list(conversation.id, order="desc",
                                                       limit=2)] == ids[::-1]
    first_page = sdk.conversations.items.list(conversation.id, order="asc", limit=2)
    assert first_page.has_more and [i.id for i in first_page.data] == ids[:2]
    item = sdk.conversations.items.retrieve(ids[2], conversation_id=conversation.id)
    assert item.id == ids[2] and item.type == "message"
    shown = sdk.conversations.items.delete(ids[2], conversation_id=conversation.id)
    assert shown.id == conversation.id
    assert item_ids(sdk, conversation.id) == ids[:2] + ids[3:]
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.items.retrieve(ids[2], conversation_id=conversation.id)


def test_a_response_reads_and_extends_its_conversation(sdk: openai.OpenAI, model: str,
                                                       conversation: Any) -> None:
    before = item_ids(sdk, conversation.id)
    response = sdk.responses.create(model=model, input="What is my name?",
                                    conversation=conversation.id, max_output_tokens=SHORT)
    assert response.status in FINISHED
    assert response.conversation is not None and response.conversation.id == conversation.id
    after = item_ids(sdk, conversation.id)
    # Its input, then its output items with the ids it showed, after what was there.
    assert after[:len(before)] == before
    assert after[-len(response.output):] == [item.id for item in response.output]
    assert len(after) == len(before) + 1 + len(response.output)

    with sdk.responses.stream(model=model, input="Say hello.", max_output_tokens=SHORT,
                              conversation={"id": conversation.id}) as stream:
        events = sdk_events(stream)
        final = stream.get_final_response()
    assert events[-1]["response"]["conversation"] == {"id": conversation.id}
    # Seen finished, so its items are there.
    assert item_ids(sdk, conversation.id)[-len(final.output):] == [i.id for i in final.output]


def test_a_background_response_on_a_conversation(sdk: openai.OpenAI, model: str,
                                                 deployment: Deployment,
                                                 conversation: Any) -> None:
    try:
        created = sdk.responses.create(model=model, input="Say hello.", background=True,
                                       conversation=conversation.id, max_output_tokens=SHORT)
    except openai.BadRequestError as exc:
        pytest.skip(f"the deployment refuses background responses: {exc.message}")
    wait_until(lambda: sdk.responses.retrieve(created.id).status in
               FINISHED | {"failed", "cancelled"}, deployment.timeout,
               "the background response to finish", max_interval=0.5)
    final = sdk.responses.retrieve(created.id)
    assert final.status in FINISHED
    assert item_ids(sdk, conversation.id)[-len(final.output):] == [i.id for i in final.output]


def test_refusals(http: httpx.Client, model: str, conversation: Any) -> None:
    both = http.post("responses", json={"model": model, "input": "x",
                                        "conversation": conversation.id,
                                        "previous_response_id": "resp_x"})
    assert_openai_error(both, 400, param=..., exact=False)
    unknown = http.post("responses", json={"model": model, "input": "x",
                                           "conversation": "conv_does_not_exist"})
    assert_openai_error(unknown, {400, 404}, param="conversation", exact=False)
    too_many = http.post(f"conversations/{conversation.id}/items",
                         json={"items": [user("x")] * 21})
    assert_openai_error(too_many, 400, param=..., exact=False)
    assert_openai_error(http.get("conversations/conv_does_not_exist"), 404, param=...,
                        exact=False)
