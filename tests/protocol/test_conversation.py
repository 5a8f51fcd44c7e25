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


def thought(text: str) -> dict[str, object]:
    return {"type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def test_reasoning_goes_with_the_assistant_message_after_it() -> None:
    items = normalize_input([
        {"role": "user", "content": "q1"},
        thought("think 1"),
        {"role": "assistant", "content": [{"type": "output_text", "text": "a1"}]},
        {"role": "user", "content": "q2"},
        thought("think 2a"), thought("think 2b"),
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "out"},
        thought("think 3"),  # a turn that was all reasoning
        {"role": "user", "content": "q3"},
        thought("trailing"),
    ])
    assert items_to_messages(items) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "reasoning_content": "think 1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "", "reasoning_content": "think 2a\nthink 2b",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "out"},
        {"role": "assistant", "content": "", "reasoning_content": "think 3"},
        {"role": "user", "content": "q3"},
    ]
