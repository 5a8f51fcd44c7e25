"""The per-response event state machine: which event may follow which.

:class:`EventValidator` is fed every event of one response stream, in order, and raises
:class:`ProtocolViolation` at the first one that breaks the rules:

- ``sequence_number`` starts at 0 and goes up by one;
- ``response.created`` first, ``response.queued`` only right after it (background),
  ``response.in_progress`` before any output; exactly one terminal event
  (``response.completed | response.incomplete | response.failed``), nothing after it;
- output items open and close one at a time, ``output_index`` counting from 0; content
  parts open and close one at a time inside a message, ``content_index`` counting from 0;
- every delta belongs to the open item/part (ids and indexes match) and the deltas join
  to the ``.done`` text, which the part and the item repeat (a function call's
  arguments and a custom tool call's input likewise);
- ``error`` may come at any time before the terminal event, and only ``response.failed``
  may follow it; ``response.ping`` and ``response.rate_limits.updated`` may come between
  ``response.created`` and the terminal event.

The server checks each event before sending it; the tests check every stream they read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_EVENTS = {
    "response.completed": ("completed",),
    # A cancelled response ends with response.incomplete (see events.py).
    "response.incomplete": ("incomplete", "cancelled"),
    "response.failed": ("failed", "cancelled"),
}
ANYTIME_EVENTS = frozenset({"response.ping", "response.rate_limits.updated"})

# Delta/done event families: (delta type, done type, field holding the full text).
_TEXT_FAMILIES = {
    "response.output_text.delta": ("text", "output_text"),
    "response.refusal.delta": ("refusal", "refusal"),
    "response.reasoning_text.delta": ("text", "reasoning_text"),
}
_TEXT_DONE = {
    "response.output_text.done": "response.output_text.delta",
    "response.refusal.done": "response.refusal.delta",
    "response.reasoning_text.done": "response.reasoning_text.delta",
}


# Call items and their delta/done event families: a function call's arguments, a custom
# tool call's input.
_CALL_FAMILIES = {"response.function_call_arguments": "function_call",
                  "response.custom_tool_call_input": "custom_tool_call"}
_CALL_PAYLOAD = {"function_call": "arguments", "custom_tool_call": "input"}


class ProtocolViolation(Exception):
    """An event that may not be sent at this point of the stream."""


@dataclass
class _OpenItem:
    item_id: str
    output_index: int
    kind: str
    parts: int = 0
    part_open: bool = False
    part_type: str | None = None
    text: list[str] = field(default_factory=list)
    text_done: bool = False
    # A function call's argument deltas, or a custom tool call's input deltas.
    arguments: list[str] = field(default_factory=list)
    part_texts: list[str] = field(default_factory=list)


@dataclass
class EventValidator:
    next_sequence: int = 0
    started: bool = False
    in_progress: bool = False
    terminal: str | None = None
    errored: bool = False
    item_count: int = 0
    item_ids: set[str] = field(default_factory=set)
    open_item: _OpenItem | None = None
    last_type: str | None = None

    def check(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if not isinstance(kind, str):
            raise ProtocolViolation("event without a type")
        if event.get("sequence_number") != self.next_sequence:
            raise ProtocolViolation(
                f"{kind}: sequence_number {event.get('sequence_number')!r}, "
                f"expected {self.next_sequence}"
            )
        if self.terminal is not None:
            raise ProtocolViolation(f"{kind} after the terminal event {self.terminal}")
        self._check(kind, event)
        self.next_sequence += 1
        self.last_type = kind

    # -- the transition table, one method per family --------------------------------

    def _check(self, kind: str, event: Mapping[str, Any]) -> None:
        if kind == "response.created":
            if self.started:
                raise ProtocolViolation("response.created twice")
            self.started = True
            return
        if not self.started:
            raise ProtocolViolation(f"{kind} before response.created")
        if self.errored and kind != "response.failed":
            raise ProtocolViolation(f"{kind} after an error event")
        if kind in ANYTIME_EVENTS:
            return
        if kind == "error":
            if not isinstance(event.get("message"), str):
                raise ProtocolViolation("error event without a message")
            self.errored = True
            return
        if kind in TERMINAL_EVENTS:
            self._terminal(kind, event)
            return
        if kind == "response.queued":
            if self.last_type != "response.created" or self.in_progress:
                raise ProtocolViolation("response.queued must follow response.created")
            return
        if kind == "response.in_progress":
            if self.in_progress:
                raise ProtocolViolation("response.in_progress twice")
            self.in_progress = True
            return
        if not self.in_progress:
            raise ProtocolViolation(f"{kind} before response.in_progress")
        if kind == "response.output_item.added":
            self._item_added(event)
        elif kind == "response.output_item.done":
            self._item_done(event)
        elif kind == "response.content_part.added":
            self._part_added(event)
        elif kind == "response.content_part.done":
            self._part_done(event)
        elif kind in _TEXT_FAMILIES:
            self._text_delta(kind, event)
        elif kind in _TEXT_DONE:
            self._text_done(kind, event)
        elif kind.rpartition(".")[0] in _CALL_FAMILIES:
            self._call_piece(kind, event)
        elif kind == "response.compaction.compacting":
            self._current(event, "compaction")
        else:
            raise ProtocolViolation(f"unknown event type {kind}")

    def _call_piece(self, kind: str, event: Mapping[str, Any]) -> None:
        """A call's argument (function) or input (custom tool) delta, or its .done."""
        family, _, step = kind.rpartition(".")
        item_kind = _CALL_FAMILIES[family]
        item = self._current(event, item_kind)
        if step == "delta":
            item.arguments.append(_str(event, "delta"))
        elif step == "done":
            if event.get(_CALL_PAYLOAD[item_kind]) != "".join(item.arguments):
                raise ProtocolViolation(f"{kind}: the deltas do not join to it")
            item.text_done = True
        else:
            raise ProtocolViolation(f"unknown event type {kind}")

    def _terminal(self, kind: str, event: Mapping[str, Any]) -> None:
        response = event.get("response")
        if not isinstance(response, Mapping):
            raise ProtocolViolation(f"{kind} without a response")
        if response.get("status") not in TERMINAL_EVENTS[kind]:
            raise ProtocolViolation(f"{kind} with status {response.get('status')!r}")
        if kind != "response.failed":
            if self.open_item is not None:
                raise ProtocolViolation(f"{kind} while an output item is open")
            if len(response.get("output", ())) != self.item_count:
                raise ProtocolViolation(f"{kind}: output does not match the items sent")
        self.terminal = kind

    def _item_added(self, event: Mapping[str, Any]) -> None:
        if self.open_item is not None:
            raise ProtocolViolation("output_item.added while another item is open")
        item = event.get("item")
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise ProtocolViolation("output_item.added without an item id")
        if event.get("output_index") != self.item_count:
            raise ProtocolViolation(
                f"output_index {event.get('output_index')!r}, expected {self.item_count}"
            )
        if item["id"] in self.item_ids:
            raise ProtocolViolation(f"item id {item['id']} reused")
        self.item_ids.add(item["id"])
        self.open_item = _OpenItem(item["id"], self.item_count, str(item.get("type")))

    def _current(self, event: Mapping[str, Any], kind: str | None = None) -> _OpenItem:
        item = self.open_item
        if item is None:
            raise ProtocolViolation(f"{event.get('type')} with no open item")
        if event.get("item_id") != item.item_id or event.get("output_index") != item.output_index:
            raise ProtocolViolation(f"{event.get('type')} names another item")
        if kind is not None and item.kind != kind:
            raise ProtocolViolation(f"{event.get('type')} on a {item.kind} item")
        return item

    def _part_added(self, event: Mapping[str, Any]) -> None:
        item = self._current(event)
        if item.kind not in ("message", "reasoning") or item.part_open:
            raise ProtocolViolation("content_part.added out of place")
        if event.get("content_index") != item.parts:
            raise ProtocolViolation("content_index out of order")
        part = event.get("part")
        if not isinstance(part, Mapping):
            raise ProtocolViolation("content_part.added without a part")
        item.part_open, item.part_type = True, str(part.get("type"))
        item.text, item.text_done = [], False

    def _part_done(self, event: Mapping[str, Any]) -> None:
        item = self._current(event)
        if not item.part_open or event.get("content_index") != item.parts:
            raise ProtocolViolation("content_part.done without its part")
        part = event.get("part")
        joined = "".join(item.text)
        if not isinstance(part, Mapping) or part.get("type") != item.part_type:
            raise ProtocolViolation("content_part.done with another part type")
        if part.get("text", part.get("refusal")) != joined:
            raise ProtocolViolation("content_part.done text differs from the deltas")
        item.part_texts.append(joined)
        item.parts += 1
        item.part_open = False

    def _text_delta(self, kind: str, event: Mapping[str, Any]) -> None:
        item = self._current(event)
        _, part_type = _TEXT_FAMILIES[kind]
        if not item.part_open or item.part_type != part_type or item.text_done:
            raise ProtocolViolation(f"{kind} outside an open {part_type} part")
        if event.get("content_index") != item.parts:
            raise ProtocolViolation(f"{kind}: content_index mismatch")
        item.text.append(_str(event, "delta"))

    def _text_done(self, kind: str, event: Mapping[str, Any]) -> None:
        item = self._current(event)
        key, part_type = _TEXT_FAMILIES[_TEXT_DONE[kind]]
        if not item.part_open or item.part_type != part_type or item.text_done:
            raise ProtocolViolation(f"{kind} outside an open {part_type} part")
        if event.get(key) != "".join(item.text):
            raise ProtocolViolation(f"{kind}: deltas do not join to the final text")
        item.text_done = True

    def _item_done(self, event: Mapping[str, Any]) -> None:
        item = self.open_item
        if item is None or event.get("output_index") != item.output_index:
            raise ProtocolViolation("output_item.done with no such open item")
        if item.part_open:
            raise ProtocolViolation("output_item.done while a content part is open")
        done = event.get("item")
        if not isinstance(done, Mapping) or done.get("id") != item.item_id:
            raise ProtocolViolation("output_item.done for another item")
        if item.kind == "message":
            texts = [p.get("text", p.get("refusal")) for p in done.get("content", ())]
            if texts != item.part_texts:
                raise ProtocolViolation("output_item.done content differs from its parts")
        payload = _CALL_PAYLOAD.get(item.kind)
        if payload is not None and done.get(payload) != "".join(item.arguments):
            raise ProtocolViolation(f"output_item.done {payload} differ from the deltas")
        self.open_item = None
        self.item_count += 1


def _str(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise ProtocolViolation(f"{event.get('type')}: {key} is not a string")
    return value
