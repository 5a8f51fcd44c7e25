"""ResponseEvents under any sequence of operations: every stream it builds is well formed.

Hypothesis drives the builder the way a run does (text deltas with awkward unicode,
pings, notices, then one of complete/incomplete/fail/cancel, then late calls) and each
resulting stream is checked three ways: by a fresh EventValidator, by the suite's
independent stream checker, and by the openai SDK's own event models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from tests.protocol.builders import USAGE, deltas, logprob, new_builder
from tests.support.events import check_stream, joined_text
from tests.support.open_responses import spec_event
from trio_responses.protocol.events import Emitted, ResponseEvents
from trio_responses.protocol.machine import TERMINAL_EVENTS, EventValidator
from trio_responses.protocol.sse import frame

EVENT_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
NOT_IN_SDK = {"response.ping", "response.rate_limits.updated"}

@dataclass(frozen=True)
class Text:
    delta: str
    with_logprobs: bool


@dataclass(frozen=True)
class Reasoning:
    delta: str


@dataclass(frozen=True)
class Call:
    call_id: str
    arguments: str
    namespace: str | None = None


@dataclass(frozen=True)
class CustomCall:
    call_id: str
    input: str
    namespace: str | None = None


@dataclass(frozen=True)
class CallOutput:
    call_id: str
    output: str
    custom: bool = False


@dataclass(frozen=True)
class EndItems:
    pass


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Notice:
    pass


@dataclass(frozen=True)
class End:
    how: str  # complete | incomplete | fail | cancel


Op = Text | Reasoning | Call | CustomCall | CallOutput | EndItems | Ping | Notice
call_ids = st.sampled_from(["call_a", "call_b"])
middle_ops = st.one_of(
    st.builds(Text, deltas, st.booleans()),
    st.builds(Text, deltas, st.booleans()),
    st.builds(Reasoning, deltas),
    st.builds(Call, call_ids, st.sampled_from(["", "{", '"x": 1', "}", "\n\u2028"]),
              st.sampled_from([None, "crm"])),
    st.builds(CustomCall, call_ids, deltas, st.sampled_from([None, "crm"])),
    st.builds(CallOutput, call_ids, deltas, st.booleans()),
    st.just(EndItems()),
    st.just(Ping()),
    st.just(Notice()),
)
ends = st.builds(End, st.sampled_from(["complete", "incomplete", "fail", "cancel"]))
late_ops = st.one_of(middle_ops, ends)


def expected_output(ops: list[Op]) -> list[tuple[str, str]]:
    """The output items the operations make, as (type, text): consecutive pieces of one
    kind (one call_id) share an item; anything else closes it."""
    items: list[tuple[str, str, str]] = []  # (type, key, text)
    open_key: tuple[str, str] | None = None
    for op in ops:
        if isinstance(op, Text | Reasoning | Call):
            kind, key, piece = (
                ("message", "", op.delta) if isinstance(op, Text)
                else ("reasoning", "", op.delta) if isinstance(op, Reasoning)
                else ("function_call", op.call_id, op.arguments))
            if open_key == (kind, key):
                items[-1] = (kind, key, items[-1][2] + piece)
            else:
                items.append((kind, key, piece))
                open_key = (kind, key)
        elif isinstance(op, CustomCall):
            items.append(("custom_tool_call", op.call_id, op.input))
            open_key = None
        elif isinstance(op, CallOutput):
            kind = "custom_tool_call_output" if op.custom else "function_call_output"
            items.append((kind, op.call_id, op.output))
            open_key = None
        elif isinstance(op, EndItems):
            open_key = None
    return [(kind, text) for kind, _, text in items]


def item_text(item: dict[str, Any]) -> tuple[str, str]:
    kind = item["type"]
    if kind in ("message", "reasoning"):
        return kind, "".join(part["text"] for part in item["content"])
    key = {"function_call": "arguments", "custom_tool_call": "input"}.get(kind, "output")
    return kind, item[key]


def apply(builder: ResponseEvents, op: Op | End) -> list[Emitted]:
    if isinstance(op, Text):
        # A token-sized logprob (a 64 KiB "token" would only make the test slow).
        return builder.text(op.delta, [logprob(op.delta[:8])] if op.with_logprobs else [])
    if isinstance(op, Reasoning):
        return builder.reasoning(op.delta)
    if isinstance(op, Call):
        return builder.function_call(call_id=op.call_id, name="get_weather",
                                     arguments=op.arguments, namespace=op.namespace)
    if isinstance(op, CustomCall):
        return builder.custom_tool_call(call_id=op.call_id, name="apply_patch",
                                        input_text=op.input, namespace=op.namespace)
    if isinstance(op, CallOutput):
        return builder.tool_output(call_id=op.call_id, output=op.output, custom=op.custom)
    if isinstance(op, EndItems):
        return builder.end_items()
    if isinstance(op, Ping):
        return builder.ping()
    if isinstance(op, Notice):
        return builder.notice("response.rate_limits.updated",
                              rate_limits=[{"name": "requests", "limit": 10, "remaining": 9,
                                            "reset_seconds": 6.0}])
    if op.how == "complete":
        return builder.complete(usage=USAGE, at=1700000001.0)
    if op.how == "incomplete":
        return builder.complete(usage=USAGE, at=1700000001.0,
                                incomplete_reason="max_output_tokens")
    if op.how == "fail":
        return builder.fail("the engine died", code="server_error", usage=USAGE)
    return builder.cancel(usage=USAGE)


EXPECTED_END = {
    "complete": ("response.completed", "completed"),
    "incomplete": ("response.incomplete", "incomplete"),
    "fail": ("response.failed", "failed"),
    "cancel": ("response.incomplete", "cancelled"),
}


def assert_well_formed(emitted: list[Emitted]) -> list[dict[str, Any]]:
    events = [event for event, _ in emitted]
    validator = EventValidator()
    for event in events:
        validator.check(event)
    assert validator.terminal is not None
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    terminals = [e for e in events if e["type"] in TERMINAL_EVENTS]
    assert len(terminals) == 1 and terminals[0] is events[-1]
    if not any(e["type"].startswith("response.reasoning_text") for e in events):
        # The suite's independent checker knows output text only (not reasoning text).
        check_stream(events)
    for event, data in emitted:
        assert data == frame(event)
        # What a client decodes is the event itself, byte for byte through JSON.
        assert json.loads(data.split(b"\ndata: ", 1)[1]) == event
        if event["type"] not in NOT_IN_SDK:
            EVENT_ADAPTER.validate_python(event)
        spec_event(event)
    return events


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(background=st.booleans(), ops=st.lists(middle_ops, max_size=12), end=ends,
       late=st.lists(late_ops, max_size=5))
def test_any_operation_sequence_gives_a_well_formed_stream(
    background: bool, ops: list[Op], end: End, late: list[Any]
) -> None:
    builder = new_builder(background=background)
    emitted = builder.created() + builder.in_progress()
    for op in ops:
        emitted += apply(builder, op)
    assert not builder.finished
    emitted += apply(builder, end)
    assert builder.finished
    final_object = json.loads(json.dumps(builder.response))
    for op in late:
        assert apply(builder, op) == []
    assert builder.response == final_object, "a late call changed the final object"

    events = assert_well_formed(emitted)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == (["response.created", "response.queued"] if background
                         else ["response.created", "response.in_progress"])
    terminal_type, status = EXPECTED_END[end.how]
    assert kinds[-1] == terminal_type
    assert builder.status == status == events[-1]["response"]["status"]
    if end.how == "fail":
        assert kinds[-2] == "error" and events[-2]["code"] == "server_error"
        assert builder.response["error"] == {"code": "server_error",
                                             "message": "the engine died"}
    if end.how == "incomplete":
        assert builder.response["incomplete_details"] == {"reason": "max_output_tokens"}

    texts = [op.delta for op in ops if isinstance(op, Text)]
    assert joined_text(events) == "".join(texts) == builder.output_text()
    final = events[-1]["response"]
    assert final == builder.response
    Response.model_validate(final)
    assert [item_text(item) for item in final["output"]] == expected_output(ops)
    ends_open = bool(ops) and bool(final["output"]) and not isinstance(
        [op for op in ops if not isinstance(op, Ping | Notice)][-1],
        CallOutput | CustomCall | EndItems)
    last_status = "completed" if end.how == "complete" or not ends_open else "incomplete"
    statuses = [item["status"] for item in final["output"]]
    assert statuses == ["completed"] * (len(statuses) - 1) + [last_status] * bool(statuses)
    with_lp = [op.delta[:8] for op in ops if isinstance(op, Text) and op.with_logprobs]
    assert [lp["token"] for item in final["output"] if item["type"] == "message"
            for lp in item["content"][0]["logprobs"]] == with_lp
    assert builder.next_sequence == len(events)


def test_snapshots_are_copies() -> None:
    """An event already built never changes when the response goes on."""
    builder = new_builder()
    (created,) = builder.created()
    builder.in_progress()
    builder.text("hello")
    (added,) = [e for e, _ in builder.text(" world")]
    builder.complete(usage=USAGE, at=1.0)
    assert created[0]["response"]["status"] == "in_progress"
    assert created[0]["response"]["output"] == []
    assert added["delta"] == " world"
    assert builder.response["output"][0]["content"][0]["text"] == "hello world"


def test_builder_state_properties() -> None:
    builder = new_builder()
    assert (builder.status, builder.finished, builder.next_sequence) == ("in_progress", False, 0)
    builder.created()
    assert builder.next_sequence == 1
    builder.in_progress()
    builder.text("a")
    assert builder.next_sequence == 5  # created, in_progress, item, part, delta
    builder.cancel()
    assert builder.finished and builder.status == "cancelled"
    assert builder.response["usage"] is None  # cancel without usage keeps none


def test_invalid_notice_fails_the_response_instead_of_breaking_the_stream() -> None:
    builder = new_builder()
    emitted = builder.created() + builder.in_progress() + builder.text("partial")
    bad = builder.notice("response.made_up")
    assert [e["type"] for e, _ in bad] == ["error", "response.failed"]
    assert "invalid event" in bad[0][0]["message"]
    assert_well_formed(emitted + bad)


def test_text_before_in_progress_fails_cleanly() -> None:
    builder = new_builder()
    emitted = builder.created() + builder.text("too early")
    assert [e["type"] for e, _ in emitted] == ["response.created", "error", "response.failed"]
    assert builder.status == "failed"
    assert_well_formed(emitted)


# -- the per-event byte limit ---------------------------------------------------------


@pytest.mark.parametrize("big", ["x" * 5000, "😀" * 1500, "\x00" * 1000])
def test_oversized_delta_becomes_error_and_failed(big: str) -> None:
    limit = 2000
    builder = new_builder(max_event_bytes=limit)
    emitted = builder.created() + builder.in_progress() + builder.text("fine ")
    over = builder.text(big)
    kinds = [e["type"] for e, _ in over]
    assert kinds == ["error", "response.failed"]
    error = over[0][0]
    assert "response.output_text.delta" in error["message"]
    assert f"limit of {limit} bytes" in error["message"]
    assert "--max-stream-event-bytes" in error["message"]
    assert builder.status == "failed"
    events = assert_well_formed(emitted + over)
    # Never a cut event: the big delta is not in the stream at all.
    assert joined_text(events) == "fine "
    for event, data in emitted + over:
        if event["type"] != "response.failed":
            assert len(data) <= limit
    # Nothing more comes out.
    assert builder.text("more") == [] and builder.complete(usage=USAGE, at=1.0) == []


def test_oversized_final_event_drops_output_from_failed() -> None:
    """Deltas each fit, but the completed object (all the text) does not."""
    limit = 3000
    builder = new_builder(max_event_bytes=limit)
    emitted = builder.created() + builder.in_progress()
    for _ in range(10):
        emitted += builder.text("y" * 250)
    end = builder.complete(usage=USAGE, at=1.0)
    kinds = [e["type"] for e, _ in end]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    failed_event, failed_data = end[-1]
    assert failed_event["response"]["status"] == "failed"
    assert failed_event["response"]["output"] == []
    assert len(failed_data) <= limit
    assert f"limit of {limit} bytes" in end[-2][0]["message"]
    assert_well_formed(emitted + end)


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1800, 12000), ops=st.lists(middle_ops, max_size=8), end=ends)
def test_any_limit_any_stream_stays_well_formed(
    limit: int, ops: list[Text | Ping | Notice], end: End
) -> None:
    builder = new_builder(max_event_bytes=limit)
    emitted = builder.created() + builder.in_progress()
    for op in [*ops, end]:
        emitted += apply(builder, op)
    events = assert_well_formed(emitted)
    for event, data in emitted:
        if len(data) > limit:
            # Only the failure itself may pass the limit, and it carries no output.
            assert event["type"] == "response.failed" and event["response"]["output"] == []
    if events[-1]["type"] == "response.failed" and end.how != "fail":
        assert f"limit of {limit} bytes" in events[-2]["message"]


def test_oversized_created_event_does_not_escape() -> None:
    builder = new_builder(max_event_bytes=4000, instructions="i" * 5000)
    emitted = builder.created() + builder.in_progress()
    assert_well_formed(emitted + builder.complete(usage=USAGE, at=1.0))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(deltas, min_size=1, max_size=12), st.sampled_from([0, 1500, 70_000]))
def test_text_deltas_from_the_template_are_what_the_general_path_builds(
        pieces: list[str], max_event_bytes: int) -> None:
    """The common text delta is framed from a template of its part (plain_text): event
    for event and byte for byte what the general path builds and frames, an event over
    the size limit included (it ends the stream the same way)."""
    fast = new_builder(max_event_bytes=max_event_bytes)
    general = new_builder(max_event_bytes=max_event_bytes)
    general.plain_text = lambda delta: None  # type: ignore[method-assign]
    for builder in (fast, general):
        builder.created()
        builder.in_progress()
    for piece in pieces:
        built = fast.text(piece)
        assert built == general.text(piece)
        assert [data for _, data in built] == [frame(event) for event, _ in built]
    assert fast.complete(usage=USAGE, at=1.0) == general.complete(usage=USAGE, at=1.0)
    assert fast.response == general.response
