"""A response as its events so far show it: the stream folded into the response object.

A replica that is not running a response has only its saved events (``runtime/shared.py``)
to answer a ``GET`` with while it runs elsewhere; folding them gives what the running
replica's own ``GET`` shows: the last status an event carried, every output item added
so far, and the text and arguments streamed into the open one. Plain data in, plain data
out; events this does not know change nothing (their item is whole at its ``done``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

# Deltas appended to a field of the item at ``output_index``, or of its content part.
_ITEM_DELTAS = {
    "response.function_call_arguments.delta": "arguments",
    "response.custom_tool_call_input.delta": "input",
}
_PART_DELTAS = {"response.output_text.delta", "response.reasoning_text.delta"}


def fold_events(response: Mapping[str, Any], events: Iterable[Mapping[str, Any]]
                ) -> dict[str, Any]:
    """``response`` (the stored object) with ``events`` applied in order."""
    folded: dict[str, Any] = copy.deepcopy(dict(response))
    for event in events:
        kind = event.get("type")
        if isinstance(event.get("response"), Mapping):
            folded = copy.deepcopy(dict(event["response"]))
        elif kind in ("response.output_item.added", "response.output_item.done"):
            _put_item(folded, event)
        elif kind == "response.content_part.added":
            item = _item(folded, event)
            if item is not None and isinstance(item.get("content"), list):
                item["content"].append(copy.deepcopy(event["part"]))
        elif kind in _PART_DELTAS:
            part = _part(folded, event)
            if part is not None:
                part["text"] = part.get("text", "") + event.get("delta", "")
        elif kind in _ITEM_DELTAS:
            item = _item(folded, event)
            if item is not None:
                field = _ITEM_DELTAS[kind]
                item[field] = item.get(field, "") + event.get("delta", "")
    return folded


def _put_item(folded: dict[str, Any], event: Mapping[str, Any]) -> None:
    output = folded.setdefault("output", [])
    index = event.get("output_index")
    if not isinstance(index, int) or index < 0 or index > len(output):
        return
    item = copy.deepcopy(event["item"])
    if index == len(output):
        output.append(item)
    else:
        output[index] = item


def _item(folded: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any] | None:
    output = folded.get("output") or []
    index = event.get("output_index")
    if isinstance(index, int) and 0 <= index < len(output):
        item: dict[str, Any] = output[index]
        return item
    return None


def _part(folded: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any] | None:
    item = _item(folded, event)
    content = item.get("content") if item is not None else None
    index = event.get("content_index")
    if isinstance(content, list) and isinstance(index, int) and 0 <= index < len(content):
        part: dict[str, Any] = content[index]
        return part
    return None
