"""From stored items to the chat messages an engine's template renders.

The prompt of a turn is: the request's ``instructions`` as a system message, then every
earlier turn behind ``previous_response_id`` (its input items, then its output items),
then this turn's input. Instructions of earlier turns are not carried over (OpenAI's
rule). A reasoning item's text (its ``content``; a sealed one is opened by the runtime
first) goes with the assistant message after it (an empty one of its own when a user message or
a tool output comes first; dropped at the very end), as ``reasoning_content`` (the key chat
templates of thinking models read; vLLM's server merges reasoning into the next
assistant message likewise); templates that do not know it leave it out. Function and
custom tool calls become assistant ``tool_calls`` and their outputs
``tool`` messages, the form chat templates know, under the names the model was offered
them by (:mod:`.tooldefs`: ``<namespace>__<name>``; a custom tool's input as the
``{"input": ...}`` arguments of its function).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .tooldefs import custom_arguments, model_tool_name

_ROLE = {"developer": "system"}


def _text(content: Iterable[Mapping[str, Any]]) -> str:
    return "".join(part.get("text") or part.get("refusal") or "" for part in content)


def items_to_messages(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    reasoning: list[str] = []  # reasoning text waiting for the next assistant message

    def assistant(message: dict[str, Any]) -> dict[str, Any]:
        if reasoning:
            message["reasoning_content"] = "\n".join(reasoning)
            reasoning.clear()
        return message

    for item in items:
        kind = item.get("type")
        if kind == "reasoning":
            text = _text(item.get("content") or ())
            if text:
                reasoning.append(text)
        elif kind == "message":
            role = _ROLE.get(item["role"], item["role"])
            if role != "assistant" and reasoning:
                # A turn that was all reasoning: an assistant message of its own.
                messages.append(assistant({"role": "assistant", "content": ""}))
            message = {"role": role, "content": _text(item["content"])}
            messages.append(assistant(message) if role == "assistant" else message)
        elif kind in ("function_call", "custom_tool_call"):
            arguments = (item["arguments"] if kind == "function_call"
                         else custom_arguments(item["input"]))
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": model_tool_name(item["name"], item.get("namespace")),
                             "arguments": arguments},
            }
            last = messages[-1] if messages else None
            # Parallel calls of one turn belong to one assistant message.
            if last and last["role"] == "assistant" and "tool_calls" in last \
                    and not reasoning:
                last["tool_calls"].append(call)
            else:
                messages.append(assistant({"role": "assistant", "content": "",
                                           "tool_calls": [call]}))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if reasoning:
                messages.append(assistant({"role": "assistant", "content": ""}))
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    return messages


def build_messages(
    instructions: str | None,
    history: Iterable[Mapping[str, Any]],
    current: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(items_to_messages(history))
    messages.extend(items_to_messages(current))
    return messages
