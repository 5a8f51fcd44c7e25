"""Checks every test applies to every stream it reads, written apart from the server's
own state machine so that one cannot hide the other's mistakes.

``check_stream`` asserts: ``response.created`` first, ``response.in_progress`` next
(after ``response.queued`` for background), sequence numbers 0, 1, 2…, output items
added and done in pairs with consistent ids and indexes, content parts nested inside
them, deltas that join to the ``.done`` text and to the final response's text, and
exactly one terminal event, last. ``sdk_parse`` parses each event with the openai SDK's
own models in strict mode, and with the Open Responses spec's (``openresponses-types``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import openai
import pydantic
from openai.types.responses import ResponseStreamEvent

from tests.support.open_responses import spec_event

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
EXTRA_TYPES = {"response.ping", "response.rate_limits.updated"}
_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def sdk_parse(event: dict[str, Any]) -> Any:
    """The event as the openai SDK types it (our extension events are skipped), after
    checking that it conforms to the Open Responses spec too."""
    spec_event(event)
    if event["type"] in EXTRA_TYPES:
        return None
    return _adapter.validate_python(event)


TEXT_EVENTS = frozenset({
    "response.content_part.added", "response.content_part.done",
    "response.output_text.delta", "response.output_text.done",
    "response.reasoning_text.delta", "response.reasoning_text.done",
})
TEXT_EVENT_PREFIX = {"message": "response.output_text.", "reasoning": "response.reasoning_text."}


def check_stream(events: Sequence[dict[str, Any]], *, resumed_after: int | None = None,
                 replay: bool = False) -> None:
    """``replay``: read back from a log, which omits the heartbeats the live stream had,
    so sequence numbers only have to increase."""
    assert events, "empty stream"
    for event in events:
        sdk_parse(event)
    numbers = [e["sequence_number"] for e in events]
    first = 0 if resumed_after is None else resumed_after + 1
    if replay:
        assert numbers[0] >= first and numbers == sorted(set(numbers)), numbers
        assert resumed_after is not None or numbers[0] == 0, numbers
    else:
        assert numbers == list(range(first, first + len(numbers))), numbers
    if resumed_after is not None:
        return
    types = [e["type"] for e in events]
    assert types[0] == "response.created", types[:3]
    body = [t for t in types if t not in EXTRA_TYPES]
    position = 1
    if body[1] == "response.queued":
        position = 2
    if "error" not in body[:position + 1]:
        assert body[position] == "response.in_progress", body[:4]
    terminals = [t for t in types if t in TERMINAL]
    assert len(terminals) == 1 and types[-1] == terminals[0], types[-3:]
    final = events[-1]["response"]

    open_items: dict[int, dict[str, Any]] = {}
    texts: dict[tuple[str, int], list[str]] = {}
    done_items: list[dict[str, Any]] = []
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert not open_items, "two items open at once"
            assert event["output_index"] == len(done_items)
            open_items[event["output_index"]] = event["item"]
        elif kind == "response.output_item.done":
            added = open_items.pop(event["output_index"])
            assert added["id"] == event["item"]["id"]
            done_items.append(event["item"])
        elif kind in TEXT_EVENTS:
            item = open_items.get(event["output_index"])
            assert item is not None and item["id"] == event["item_id"], kind
            # Answer text in message items, reasoning text in reasoning items.
            assert kind.startswith(("response.content_part.",
                                    TEXT_EVENT_PREFIX[item["type"]])), (kind, item["type"])
            key = (event["item_id"], event["content_index"])
            if kind == "response.content_part.added":
                assert key not in texts
                texts[key] = []
            elif kind.endswith(".delta"):
                texts[key].append(event["delta"])
            elif kind.endswith("_text.done"):
                assert "".join(texts[key]) == event["text"]
            else:
                assert "".join(texts[key]) == event["part"]["text"]
    if events[-1]["type"] != "response.failed":
        assert not open_items, "an item was left open"
        assert [item["id"] for item in final["output"]] == [i["id"] for i in done_items]
        for item in done_items:
            if item["type"] in TEXT_EVENT_PREFIX:
                for index, part in enumerate(item.get("content") or ()):
                    assert "".join(texts[(item["id"], index)]) == part["text"]


def joined_text(events: Sequence[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def as_dict(event: Any) -> dict[str, Any]:
    """An SDK event object back as wire JSON (the SDK's parsed subclasses warn otherwise)."""
    value: dict[str, Any] = event.model_dump(mode="json", warnings=False, exclude_unset=True)
    return value


def sdk_events(stream: Iterable[Any]) -> list[dict[str, Any]]:
    """The events of an SDK stream, as wire JSON."""
    return [as_dict(event) for event in stream]


def sdk_events_until_error(stream: Iterable[Any]) -> tuple[list[dict[str, Any]], Any]:
    """The events of an SDK stream that fails, as wire JSON, and the ``openai.APIError``
    the SDK raised at its ``error`` event (as it does on OpenAI's, which carries an
    ``error`` object); fails if the stream ends without one."""
    events: list[dict[str, Any]] = []
    try:
        for event in stream:
            events.append(as_dict(event))
    except openai.APIError as exc:
        return events, exc
    raise AssertionError(f"the stream ended without an error: {[e['type'] for e in events]}")
