"""The Conversations API's bodies and objects, sans-io: every refusal names its param, and
every object parses in the openai SDK's own models."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from openai.types.conversations import Conversation, ConversationDeletedResource
from openai.types.conversations.conversation_item import ConversationItem
from openai.types.conversations.conversation_item_list import ConversationItemList

from trio_responses.errors import InvalidRequest
from trio_responses.protocol.conversations_api import (
    MAX_ITEMS_PER_REQUEST,
    conversation_object,
    decode_add_items,
    decode_create_conversation,
    decode_update_conversation,
    deleted_conversation,
    item_bytes,
    item_list,
    present_item,
)

USER = {"role": "user", "content": "hi"}
OUTPUT = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
          "content": [{"type": "output_text", "text": "Hello.", "annotations": [],
                       "logprobs": [{"token": "Hello", "logprob": -0.5, "bytes": [72],
                                     "top_logprobs": []}]}]}
_item: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ConversationItem)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_create_body_items_and_metadata() -> None:
    items, metadata = decode_create_conversation(encode({
        "items": [USER, OUTPUT, {"type": "function_call", "call_id": "c", "name": "f",
                                 "arguments": "{}"}],
        "metadata": {"topic": "demo"}}))
    assert metadata == {"topic": "demo"}
    assert [item["type"] for item in items] == ["message", "message", "function_call"]
    assert items[0] == {"type": "message", "role": "user", "status": "completed",
                        "content": [{"type": "input_text", "text": "hi"}]}
    # The server gives ids: a replayed item's own id is not kept.
    assert all("id" not in item for item in items)
    assert decode_create_conversation(b"{}") == ([], {})
    assert decode_create_conversation(b"") == ([], {})  # curl -X POST with no body
    assert decode_create_conversation(encode({"items": [], "metadata": None})) == ([], {})


@pytest.mark.parametrize(("decode", "body", "param", "code"), [
    pytest.param(decode_create_conversation, {"items": [USER] * 21}, "items",
                 "array_above_max_length", id="create-21-items"),
    pytest.param(decode_create_conversation, {"items": [{"role": "robot", "content": "x"}]},
                 "items[0].role", "invalid_value", id="create-bad-role"),
    pytest.param(decode_create_conversation, {"items": ["hi"]}, "items[0]", "invalid_type",
                 id="create-item-not-object"),
    pytest.param(decode_create_conversation, {"metadata": {str(i): "v" for i in range(17)}},
                 "metadata", "object_above_max_properties", id="create-metadata-17"),
    pytest.param(decode_create_conversation, {"metadata": {"k": "v" * 513}}, "metadata",
                 "invalid_value", id="create-metadata-long"),
    pytest.param(decode_create_conversation, {"title": "x"}, "title", "unknown_parameter",
                 id="create-unknown-field"),
    pytest.param(decode_update_conversation, {}, "metadata", "missing_required_parameter",
                 id="update-no-metadata"),
    pytest.param(decode_update_conversation, {"metadata": {"k": 1}}, "metadata",
                 "invalid_type", id="update-metadata-int"),
    pytest.param(decode_add_items, {}, "items", "missing_required_parameter",
                 id="add-no-items"),
    pytest.param(decode_add_items, {"items": []}, "items", "array_below_min_length",
                 id="add-empty"),
    pytest.param(decode_add_items, {"items": [USER] * (MAX_ITEMS_PER_REQUEST + 1)}, "items",
                 "array_above_max_length", id="add-21-items"),
    pytest.param(decode_add_items,
                 {"items": [USER, {"role": "user", "content": [{"type": "input_image"}]}]},
                 "items[1].content[0].type", "unsupported_content", id="add-image"),
    pytest.param(decode_add_items, {"items": [{"type": "web_search_call"}]}, "items[0].type",
                 "invalid_value", id="add-unsupported-type"),
])
def test_bad_bodies_name_the_param(decode: Any, body: dict[str, Any], param: str,
                                   code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(encode(body))
    assert (caught.value.param, caught.value.code) == (param, code), caught.value.message


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"items": "x"}', b"\xff"])
def test_unparseable_bodies_are_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_add_items(body)


def test_objects_parse_in_the_sdk() -> None:
    Conversation.model_validate(conversation_object("conv_1", 1700000000, {"a": "b"}))
    deleted = ConversationDeletedResource.model_validate(deleted_conversation("conv_1"))
    assert deleted.deleted and deleted.object == "conversation.deleted"
    items = [{**USER, "type": "message", "status": "completed", "id": "msg_0",
              "content": [{"type": "input_text", "text": "hi"}]}, OUTPUT]
    page = ConversationItemList.model_validate(item_list(items, has_more=True))
    assert (page.first_id, page.last_id, page.has_more) == ("msg_0", "msg_1", True)
    empty = item_list([], has_more=False)
    assert empty["data"] == [] and empty["first_id"] is None and empty["last_id"] is None


def test_logprobs_are_shown_only_when_included() -> None:
    hidden = present_item(OUTPUT, ())
    assert hidden["content"][0]["logprobs"] == []
    assert OUTPUT["content"][0]["logprobs"], "the stored item is left as it was"  # type: ignore[index]
    shown = present_item(OUTPUT, ("message.output_text.logprobs",))
    assert shown == OUTPUT
    for item in (hidden, shown):
        _item.validate_python(item)


def test_item_bytes_is_the_stored_json() -> None:
    assert item_bytes({"text": "é"}) == len('{"text":"é"}'.encode())
