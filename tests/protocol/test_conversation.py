"""From stored items to chat messages: the prompt of a turn."""

from __future__ import annotations

from trio_responses.protocol.conversation import build_messages, items_to_messages
from trio_responses.protocol.items import normalize_input


def test_turn_prompt_order_and_roles() -> None:
    history = normalize_input([
        {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather "},
                                     {"type": "input_text", "text": "in Paris?"}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": "noon"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hidden"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ])
    current = normalize_input("And tomorrow?")
    messages = build_messages("Be brief.", history, current)
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},  # developer → system
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [  # parallel calls: one message
            {"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        # the reasoning item is not replayed
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_calls_separated_by_a_message_are_separate_turns() -> None:
    items = normalize_input([
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "1"},
        {"role": "user", "content": "go on"},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "2"},
    ])
    messages = items_to_messages(items)
    assert [len(m.get("tool_calls", ())) for m in messages] == [1, 0, 1]


def test_no_instructions_no_system_message() -> None:
    assert build_messages(None, [], normalize_input("hi")) == [
        {"role": "user", "content": "hi"}]
    assert build_messages("", [], []) == []
