"""From stored items to the chat messages an engine's template renders.

The prompt of a turn is: the request's ``instructions`` as a system message, then every
earlier turn behind ``previous_response_id`` (its input items, then its output items),
then this turn's input. Instructions of earlier turns are not carried over (OpenAI's
rule). Function and custom tool calls become assistant ``tool_calls`` and their outputs
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
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = _ROLE.get(item["role"], item["role"])
            messages.append({"role": role, "content": _text(item["content"])})
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
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
        # Reasoning items are accepted but not replayed into the prompt: the model's
        # template decides what earlier reasoning it sees, and most drop it.
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
