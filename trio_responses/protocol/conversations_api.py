"""The Conversations API's request bodies and objects (sans-io).

A conversation is a list of items kept by the server (``/v1/conversations``); a response
created with ``conversation`` reads them as its history and appends its own. This module
decodes and checks the bodies (create: optional ``items`` and ``metadata``; update:
``metadata``; add items: 1 to :data:`MAX_ITEMS_PER_REQUEST` items), and builds the
objects a client is shown (the conversation, its deletion, lists of items). Items take
the same shapes as a response's ``input`` (:func:`~.items.normalize_input`), named
``items[i]`` in errors; the runtime gives them their ids.

Not to be confused with :mod:`.conversation`, which turns items into the chat messages
of a prompt.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from ..errors import InvalidRequest
from .items import normalize_input
from .request import INCLUDABLE, Metadata, check_metadata, decode_body

# OpenAI's limit on the items one create or add-items request may carry.
MAX_ITEMS_PER_REQUEST = 20
# The one `include` value that changes a listed item here: output text logprobs are kept
# with the items, and shown only when asked for.
INCLUDE_LOGPROBS = "message.output_text.logprobs"


class _Closed(msgspec.Struct, forbid_unknown_fields=True):
    """Unknown fields are an error, as in every request body."""


class CreateConversationBody(_Closed, kw_only=True):
    items: list[dict[str, Any]] | None = None
    metadata: Metadata | None = None


class UpdateConversationBody(_Closed, kw_only=True):
    # Required (OpenAI's update takes only metadata); null clears it.
    metadata: Metadata | None


class AddItemsBody(_Closed, kw_only=True):
    items: list[dict[str, Any]]


_create = msgspec.json.Decoder(CreateConversationBody)
_update = msgspec.json.Decoder(UpdateConversationBody)
_add = msgspec.json.Decoder(AddItemsBody)


def decode_create_conversation(body: bytes) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The initial items (normalized, without ids) and the metadata of a create body (an
    empty body is an empty conversation: nothing in it is required)."""
    create = decode_body(_create, body if body.strip() else b"{}")
    check_metadata(create.metadata)
    return _items(create.items or [], allow_empty=True), dict(create.metadata or {})


def decode_update_conversation(body: bytes) -> dict[str, str]:
    update = decode_body(_update, body)
    check_metadata(update.metadata)
    return dict(update.metadata or {})


def decode_add_items(body: bytes) -> list[dict[str, Any]]:
    """The items of an add-items body, normalized, without ids."""
    return _items(decode_body(_add, body).items, allow_empty=False)


def _items(items: list[dict[str, Any]], *, allow_empty: bool) -> list[dict[str, Any]]:
    if len(items) > MAX_ITEMS_PER_REQUEST:
        raise InvalidRequest(
            f"Invalid 'items': array too long. Expected an array with at most "
            f"{MAX_ITEMS_PER_REQUEST} items, but got an array with {len(items)} items "
            "instead.", param="items", code="array_above_max_length")
    if not items and not allow_empty:
        raise InvalidRequest(
            "Invalid 'items': empty array. Expected an array with at least 1 item.",
            param="items", code="array_below_min_length")
    normalized = normalize_input(items, root="items")
    for item in normalized:
        # Ids are the server's to give (a replayed output item keeps its content only).
        item.pop("id", None)
    return normalized


def check_include(values: Sequence[str], param: str = "include") -> tuple[str, ...]:
    """``include`` values, checked against OpenAI's includable ones."""
    for index, value in enumerate(values):
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"Invalid value for '{param}[{index}]': {value!r} is not one of "
                f"{sorted(INCLUDABLE)}.", param=param, code="invalid_value")
    return tuple(values)


def item_bytes(item: Mapping[str, Any]) -> int:
    """The size of an item as stored (compact JSON, UTF-8)."""
    return len(msgspec.json.encode(item))


# -- objects ------------------------------------------------------------------------------


def conversation_object(conversation_id: str, created_at: int,
                        metadata: Mapping[str, str]) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation", "created_at": created_at,
            "metadata": dict(metadata)}


def deleted_conversation(conversation_id: str) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


def present_item(item: Mapping[str, Any], include: Iterable[str]) -> dict[str, Any]:
    """An item as a client is shown it: output text logprobs only when included."""
    shown = copy.deepcopy(dict(item))
    if INCLUDE_LOGPROBS not in include and shown.get("type") == "message":
        for part in shown.get("content") or ():
            if part.get("type") == "output_text" and part.get("logprobs"):
                part["logprobs"] = []
    return shown


def item_list(items: Sequence[Mapping[str, Any]], *, has_more: bool,
              include: Iterable[str] = ()) -> dict[str, Any]:
    """A page of items (``first_id``/``last_id`` are null on an empty page)."""
    shown_include = tuple(include)
    data = [present_item(item, shown_include) for item in items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
