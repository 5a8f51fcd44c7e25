"""The event state machine: it accepts the legal streams and names the first bad event of
each malformed one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from trio_responses.protocol.machine import EventValidator, ProtocolViolation

Event = dict[str, Any]
RESP_ID = "resp_1"


def response(status: str, output: list[Any] | None = None) -> dict[str, Any]:
    return {"id": RESP_ID, "object": "response", "status": status, "output": output or []}


def msg_item(status: str = "in_progress", text: str | None = None, item_id: str = "msg_1"
             ) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": content}


def at(item_id: str = "msg_1", index: int = 0, part: int = 0) -> dict[str, Any]:
    return {"item_id": item_id, "output_index": index, "content_index": part}


def ev(kind: str, **fields: Any) -> Event:
    return {"type": kind, **fields}


def numbered(events: list[Event]) -> list[Event]:
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def message_events(text_pieces: list[str], item_id: str = "msg_1", index: int = 0
                   ) -> list[Event]:
    text = "".join(text_pieces)
    part = {"type": "output_text", "text": "", "annotations": []}
    return [
        ev("response.output_item.added", output_index=index, item=msg_item(item_id=item_id)),
        ev("response.content_part.added", **at(item_id, index), part=part),
        *[ev("response.output_text.delta", **at(item_id, index), delta=p) for p in text_pieces],
        ev("response.output_text.done", **at(item_id, index), text=text),
        ev("response.content_part.done", **at(item_id, index), part={**part, "text": text}),
        ev("response.output_item.done", output_index=index,
           item=msg_item("completed", text, item_id)),
    ]


def good_stream() -> list[Event]:
    """created, in_progress, one message "Hello", completed: 10 events."""
    return numbered([
        ev("response.created", response=response("in_progress")),
        ev("response.in_progress", response=response("in_progress")),
        *message_events(["Hel", "lo"]),
        ev("response.completed", response=response("completed", [msg_item("completed",
                                                                           "Hello")])),
    ])


def feed(events: list[Event]) -> EventValidator:
    validator = EventValidator()
    for event in events:
        validator.check(event)
    return validator


# -- legal streams --------------------------------------------------------------------


def test_good_stream_is_accepted() -> None:
    validator = feed(good_stream())
    assert validator.terminal == "response.completed"
    assert validator.next_sequence == 10 and validator.item_count == 1


def _function_call_stream() -> list[Event]:
    item = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f",
            "arguments": "", "status": "in_progress"}
    where = {"item_id": "fc_1", "output_index": 0}
    done = {**item, "arguments": '{"a": 1}', "status": "completed"}
    return [
        ev("response.created", response=response("in_progress")),
        ev("response.in_progress", response=response("in_progress")),
        ev("response.output_item.added", output_index=0, item=item),
        ev("response.function_call_arguments.delta", **where, delta='{"a"'),
        ev("response.function_call_arguments.delta", **where, delta=": 1}"),
        ev("response.function_call_arguments.done", **where, arguments='{"a": 1}'),
        ev("response.output_item.done", output_index=0, item=done),
        ev("response.completed", response=response("completed", [done])),
    ]


def _reasoning_then_message() -> list[Event]:
    item = {"id": "rs_1", "type": "reasoning", "summary": [], "status": "in_progress"}
    where = {"item_id": "rs_1", "output_index": 0, "content_index": 0}
    part = {"type": "reasoning_text", "text": ""}
    return [
        ev("response.created", response=response("queued")),
        ev("response.queued", response=response("queued")),
        ev("response.in_progress", response=response("in_progress")),
        ev("response.output_item.added", output_index=0, item=item),
        ev("response.content_part.added", **where, part=part),
        ev("response.reasoning_text.delta", **where, delta="think"),
        ev("response.reasoning_text.done", **where, text="think"),
        ev("response.content_part.done", **where, part={**part, "text": "think"}),
        ev("response.output_item.done", output_index=0, item={**item, "status": "completed"}),
        *message_events(["a", "b"], item_id="msg_2", index=1),
        ev("response.incomplete", response=response("incomplete", [{}, {}])),
    ]


def _refusal_stream() -> list[Event]:
    part = {"type": "refusal", "refusal": ""}
    done_item = msg_item("completed")
    done_item["content"] = [{"type": "refusal", "refusal": "no"}]
    return [
        ev("response.created", response=response("in_progress")),
        ev("response.in_progress", response=response("in_progress")),
        ev("response.output_item.added", output_index=0, item=msg_item()),
        ev("response.content_part.added", **at(), part=part),
        ev("response.refusal.delta", **at(), delta="no"),
        ev("response.refusal.done", **at(), refusal="no"),
        ev("response.content_part.done", **at(), part={"type": "refusal", "refusal": "no"}),
        ev("response.output_item.done", output_index=0, item=done_item),
        ev("response.completed", response=response("completed", [done_item])),
    ]


CREATED = ev("response.created", response=response("in_progress"))
IN_PROGRESS = ev("response.in_progress", response=response("in_progress"))
ERROR = ev("error", code="server_error", message="boom", param=None)
FAILED = ev("response.failed", response=response("failed"))

LEGAL: list[Any] = [
    pytest.param(_function_call_stream, id="function-call"),
    pytest.param(_reasoning_then_message, id="background-reasoning-then-message"),
    pytest.param(_refusal_stream, id="refusal"),
    pytest.param(lambda: [CREATED, ev("response.ping"),
                          ev("response.rate_limits.updated", rate_limits=[]), IN_PROGRESS,
                          *message_events(["x"])[:3], ev("response.ping"), ERROR, FAILED],
                 id="pings-then-error-with-item-open"),
    pytest.param(lambda: [CREATED, IN_PROGRESS,
                          ev("response.incomplete", response=response("cancelled"))],
                 id="cancelled-empty"),
    pytest.param(lambda: [CREATED, ERROR, FAILED], id="error-before-in-progress"),
    pytest.param(lambda: [CREATED, IN_PROGRESS, *message_events(["a"]),
                          *message_events(["b", "c"], item_id="msg_2", index=1),
                          ev("response.completed", response=response("completed", [{}, {}]))],
                 id="two-messages"),
]


@pytest.mark.parametrize("build", LEGAL)
def test_legal_streams_are_accepted(build: Callable[[], list[Event]]) -> None:
    events = numbered(build())
    validator = feed(events)
    assert validator.terminal == events[-1]["type"]


# -- malformed streams: (mutation of the good stream, index of the first bad event) ----

Mutation = Callable[[list[Event]], list[Event]]


def setting(index: int, **fields: Any) -> Mutation:
    def mutate(events: list[Event]) -> list[Event]:
        events[index].update(fields)
        return events
    return mutate


def deep(index: int, path: tuple[str, ...], value: Any) -> Mutation:
    def mutate(events: list[Event]) -> list[Event]:
        target: Any = events[index]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return events
    return mutate


def renumbered(change: Callable[[list[Event]], list[Event]]) -> Mutation:
    return lambda events: numbered(change(events))


def dropping(*indexes: int) -> Mutation:
    return renumbered(lambda events: [e for i, e in enumerate(events) if i not in indexes])


def inserting(index: int, event: Event) -> Mutation:
    return renumbered(lambda events: [*events[:index], event, *events[index:]])


GOOD = good_stream()
COMPLETED = GOOD[-1]

# Indexes in GOOD: 0 created, 1 in_progress, 2 item.added, 3 part.added, 4-5 deltas,
# 6 text.done, 7 part.done, 8 item.done, 9 completed.
MALFORMED: list[Any] = [
    pytest.param(setting(0, sequence_number=1), 0, "sequence_number", id="seq-starts-at-1"),
    pytest.param(setting(3, sequence_number=4), 3, "expected 3", id="seq-skips"),
    pytest.param(setting(3, sequence_number=2), 3, "expected 3", id="seq-repeats"),
    pytest.param(setting(3, sequence_number="3"), 3, "sequence_number", id="seq-string"),
    pytest.param(lambda e: [{k: v for k, v in e[0].items() if k != "type"}, *e[1:]], 0,
                 "without a type", id="no-type"),
    pytest.param(dropping(0), 0, "before response.created", id="created-missing"),
    pytest.param(inserting(1, ev("response.created", response=response("in_progress"))), 1,
                 "twice", id="created-twice"),
    pytest.param(inserting(2, ev("response.queued", response=response("queued"))), 2,
                 "queued", id="queued-late"),
    pytest.param(inserting(2, ev("response.in_progress", response=response("in_progress"))),
                 2, "in_progress twice", id="in-progress-twice"),
    pytest.param(dropping(1), 1, "before response.in_progress", id="output-before-in-progress"),
    pytest.param(dropping(2, 3), 2, "no open item", id="delta-before-item-added"),
    pytest.param(dropping(3), 3, "outside an open output_text part", id="delta-before-part"),
    pytest.param(setting(6, text="Hellx"), 6, "do not join", id="text-done-mismatch"),
    pytest.param(deep(7, ("part", "text"), "Help"), 7, "differs from the deltas",
                 id="part-done-mismatch"),
    pytest.param(deep(7, ("part", "type"), "refusal"), 7, "another part type",
                 id="part-done-type"),
    pytest.param(deep(8, ("item", "content"), [{"type": "output_text", "text": "Hi"}]), 8,
                 "differs from its parts", id="item-done-content-mismatch"),
    pytest.param(deep(8, ("item", "id"), "msg_9"), 8, "another item", id="item-done-other-id"),
    pytest.param(setting(8, output_index=1), 8, "no such open item", id="item-done-index"),
    pytest.param(setting(2, output_index=1), 2, "expected 0", id="item-index-gap"),
    pytest.param(deep(2, ("item", "id"), None), 2, "without an item id", id="item-without-id"),
    pytest.param(setting(4, item_id="msg_2"), 4, "names another item", id="delta-other-item"),
    pytest.param(setting(4, output_index=3), 4, "names another item", id="delta-other-index"),
    pytest.param(setting(4, content_index=1), 4, "content_index", id="delta-content-index"),
    pytest.param(setting(4, delta=5), 4, "not a string", id="delta-not-string"),
    pytest.param(setting(3, content_index=1), 3, "content_index", id="part-index-gap"),
    pytest.param(setting(3, part=None), 3, "without a part", id="part-missing"),
    pytest.param(setting(7, content_index=1), 7, "without its part", id="part-done-index"),
    pytest.param(inserting(3, message_events(["z"], "msg_2", 1)[0]), 3, "another item is open",
                 id="second-item-while-open"),
    pytest.param(inserting(7, ev("response.output_text.delta", **at(), delta="!")), 7,
                 "outside an open", id="delta-after-text-done"),
    pytest.param(dropping(6, 7), 6, "content part is open", id="item-done-with-part-open"),
    pytest.param(inserting(5, ev("response.function_call_arguments.delta", **at(), delta="{")),
                 5, "on a message item", id="arguments-on-message"),
    pytest.param(dropping(8), 8, "while an output item is open", id="completed-with-item-open"),
    pytest.param(deep(9, ("response", "output"), []), 9, "output does not match",
                 id="completed-output-count"),
    pytest.param(deep(9, ("response", "status"), "failed"), 9, "with status",
                 id="completed-wrong-status"),
    pytest.param(setting(9, response=None), 9, "without a response", id="terminal-no-response"),
    pytest.param(renumbered(lambda e: [*e, copy.deepcopy(COMPLETED)]), 10,
                 "after the terminal event", id="two-terminals"),
    pytest.param(renumbered(lambda e: [*e, ev("response.ping")]), 10,
                 "after the terminal event", id="ping-after-terminal"),
    pytest.param(renumbered(lambda e: [*e, ev("error", message="late")]), 10,
                 "after the terminal event", id="error-after-terminal"),
    pytest.param(inserting(4, ev("error", code="x", message="boom")), 5, "after an error",
                 id="delta-after-error"),
    pytest.param(inserting(4, ev("error", code="x")), 4, "without a message",
                 id="error-without-message"),
    pytest.param(renumbered(lambda e: [*e[:9], ev("error", message="boom"), COMPLETED]), 10,
                 "after an error", id="completed-after-error"),
    pytest.param(inserting(2, ev("response.made_up")), 2, "unknown event type",
                 id="unknown-type"),
    pytest.param(renumbered(lambda e: [*e[:9], *message_events(["x"], "msg_1", 1), e[9]]), 9,
                 "reused", id="item-id-reused"),
]


@pytest.mark.parametrize(("mutate", "bad_index", "reason"), MALFORMED)
def test_malformed_streams_are_rejected_at_the_bad_event(
    mutate: Mutation, bad_index: int, reason: str
) -> None:
    events = mutate(copy.deepcopy(GOOD))
    validator = feed(events[:bad_index])
    with pytest.raises(ProtocolViolation, match=reason.replace("(", r"\(")):
        validator.check(events[bad_index])


def test_a_rejected_event_does_not_advance_the_machine() -> None:
    validator = feed(GOOD[:4])
    with pytest.raises(ProtocolViolation):
        validator.check({**GOOD[4], "sequence_number": 9})
    assert validator.next_sequence == 4
    validator.check(GOOD[4])  # the right event is still accepted afterwards


def test_function_call_arguments_must_join() -> None:
    events = numbered(_function_call_stream())
    events[5]["arguments"] = '{"a": 2}'
    validator = feed(events[:5])
    with pytest.raises(ProtocolViolation, match="do not join"):
        validator.check(events[5])
    events = numbered(_function_call_stream())
    events[6]["item"]["arguments"] = "{}"
    validator = feed(events[:6])
    with pytest.raises(ProtocolViolation, match="arguments differ"):
        validator.check(events[6])
