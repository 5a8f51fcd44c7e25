"""fold_events: the stored object plus the events so far is what the builder holds then.

A replica that does not run a response answers a GET with this fold (runtime/shared.py);
the running replica answers with the builder's own object. They must agree at every
point of the stream, for every kind of item."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tests.protocol.builders import USAGE, new_builder
from trio_responses.protocol.events import Emitted, ResponseEvents
from trio_responses.protocol.snapshot import fold_events


def steps(builder: ResponseEvents) -> list[Callable[[], list[Emitted]]]:
    """A run with every kind of streamed item: reasoning, text in pieces, a function
    call, a custom tool's input, more text, then completed."""
    return [
        builder.created, builder.in_progress,
        lambda: builder.reasoning("Think"), lambda: builder.reasoning("ing."),
        lambda: builder.text("Hel"), lambda: builder.text("lo, "),
        lambda: builder.text("world"),
        lambda: builder.function_call(call_id="c1", name="lookup", arguments='{"q":'),
        lambda: builder.function_call(call_id="c1", name="lookup", arguments=' "x"}'),
        lambda: builder.custom_tool_input(call_id="c2", name="shell", delta="ls "),
        lambda: builder.custom_tool_input(call_id="c2", name="shell", delta="-la"),
        lambda: builder.text("Done."),
        lambda: builder.complete(usage=USAGE, at=1700000001.0),
    ]


def test_the_fold_matches_the_builder_after_every_step() -> None:
    builder = new_builder(background=True)
    stored = copy.deepcopy(builder.response)  # what create() saved: queued, no output
    events: list[dict[str, Any]] = []
    checked = 0
    for step in steps(builder):
        events += [event for event, _ in step()]
        assert fold_events(stored, events) == builder.response, events[-1]["type"]
        checked += 1
    assert checked == 13 and builder.response["status"] == "completed"
    assert [item["type"] for item in builder.response["output"]] == [
        "reasoning", "message", "function_call", "custom_tool_call", "message"]


def test_no_events_is_the_stored_object_and_unknown_events_change_nothing() -> None:
    builder = new_builder(background=True)
    stored = copy.deepcopy(builder.response)
    assert fold_events(stored, []) == stored
    odd = [{"type": "response.output_text.delta", "output_index": 7, "content_index": 0,
            "delta": "x", "sequence_number": 0},
           {"type": "response.something_new", "sequence_number": 1}]
    assert fold_events(stored, odd) == stored
