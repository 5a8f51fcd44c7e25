"""Input items and tools: validation, and the one stored shape each item takes.

Clients send items in several shapes (a bare string, ``{"role", "content"}`` messages,
typed messages, output items replayed verbatim as openai-agents does, function calls
and their outputs). :func:`normalize_input` checks them and returns one canonical list,
the form stored and listed by ``GET /v1/responses/{id}/input_items`` (ids are added by
the caller). Every refusal names the offending ``param`` (``input[2].content[0].type``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest

ROLES = ("user", "assistant", "system", "developer")
ITEM_STATUSES = ("in_progress", "completed", "incomplete")
TEXT_PART_TYPES = ("input_text", "output_text")
UNSUPPORTED_PART_TYPES = ("input_image", "input_file", "input_audio")


def _invalid(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _require_str(item: Mapping[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if value is None:
        raise _invalid(
            f"Missing required parameter: '{param}.{key}'.",
            f"{param}.{key}",
            "missing_required_parameter",
        )
    if not isinstance(value, str):
        raise _invalid(
            f"Invalid type for '{param}.{key}': expected a string, but got "
            f"{type(value).__name__} instead.",
            f"{param}.{key}",
            "invalid_type",
        )
    return value


def _check_keys(item: Mapping[str, Any], allowed: Sequence[str], param: str) -> None:
    for key in item:
        if key not in allowed:
            raise _invalid(
                f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}", "unknown_parameter"
            )


def _status(item: Mapping[str, Any], param: str) -> str:
    status = item.get("status")
    if status is None:
        return "completed"
    if status not in ITEM_STATUSES:
        raise _invalid(f"Invalid value for '{param}.status': {status!r}.", f"{param}.status")
    return str(status)


def _content(content: Any, role: str, param: str) -> list[dict[str, Any]]:
    output = role == "assistant"
    if isinstance(content, str):
        return [_text_part(content, output)]
    if not isinstance(content, list):
        raise _invalid(
            f"Invalid type for '{param}.content': expected a string or an array of content parts.",
            f"{param}.content",
            "invalid_type",
        )
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        if not isinstance(part, dict):
            raise _invalid(
                f"Invalid type for '{where}': expected an object.", where, "invalid_type"
            )
        kind = part.get("type")
        if kind in TEXT_PART_TYPES:
            _check_keys(part, ("type", "text", "annotations", "logprobs"), where)
            parts.append(_text_part(_require_str(part, "text", where), output))
        elif kind == "refusal":
            if not output:
                raise _invalid(
                    f"Invalid value for '{where}.type': 'refusal' content is only allowed "
                    "in assistant messages.",
                    f"{where}.type",
                )
            _check_keys(part, ("type", "refusal"), where)
            parts.append({"type": "refusal", "refusal": _require_str(part, "refusal", where)})
        elif kind in UNSUPPORTED_PART_TYPES:
            raise _invalid(
                f"'{kind}' content is not supported by this model.",
                f"{where}.type",
                "unsupported_content",
            )
        else:
            raise _invalid(f"Invalid value for '{where}.type': {kind!r}.", f"{where}.type")
    return parts


def _text_part(text: str, output: bool) -> dict[str, Any]:
    if output:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _message(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    _check_keys(item, ("type", "role", "content", "status", "id", "phase"), param)
    role = item.get("role")
    if role not in ROLES:
        raise _invalid(
            f"Invalid value for '{param}.role': {role!r}; expected one of {', '.join(ROLES)}.",
            f"{param}.role",
        )
    if "content" not in item:
        raise _invalid(
            f"Missing required parameter: '{param}.content'.",
            f"{param}.content",
            "missing_required_parameter",
        )
    normalized: dict[str, Any] = {
        "type": "message",
        "role": role,
        "content": _content(item["content"], str(role), param),
        "status": _status(item, param),
    }
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    return normalized


def _function_call(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    # caller/async: newer SDK fields on replayed calls, accepted and dropped.
    _check_keys(item, ("type", "id", "call_id", "name", "arguments", "status", "namespace",
                       "caller", "async"), param)
    normalized = {
        "type": "function_call",
        "call_id": _require_str(item, "call_id", param),
        "name": _require_str(item, "name", param),
        "arguments": _require_str(item, "arguments", param),
        "status": _status(item, param),
    }
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    return normalized


def _function_call_output(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    _check_keys(item, ("type", "id", "call_id", "output", "status", "name", "namespace",
                       "caller"), param)
    output = item.get("output")
    if isinstance(output, list):
        output = "".join(part["text"] for part in _content(output, "user", param) if "text" in part)
    elif not isinstance(output, str):
        raise _invalid(
            f"Invalid type for '{param}.output': expected a string.",
            f"{param}.output",
            "invalid_type",
        )
    normalized = {
        "type": "function_call_output",
        "call_id": _require_str(item, "call_id", param),
        "output": output,
        "status": _status(item, param),
    }
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    return normalized


def _reasoning_parts(value: Any, kind: str, param: str) -> list[dict[str, Any]]:
    """A reasoning item's ``summary`` (``summary_text`` parts) or ``content``
    (``reasoning_text`` parts), checked: they are stored and listed back as given."""
    if not isinstance(value, list):
        raise _invalid(f"Invalid type for '{param}': expected an array.", param, "invalid_type")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _invalid(f"Invalid type for '{where}': expected an object.", where,
                           "invalid_type")
        if part.get("type") != kind:
            raise _invalid(f"Invalid value for '{where}.type': expected '{kind}'.",
                           f"{where}.type")
        _check_keys(part, ("type", "text"), where)
        parts.append({"type": kind, "text": _require_str(part, "text", where)})
    return parts


def _reasoning(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    _check_keys(item, ("type", "id", "summary", "content", "encrypted_content", "status"), param)
    summary = _reasoning_parts(item.get("summary", []), "summary_text", f"{param}.summary")
    normalized: dict[str, Any] = {"type": "reasoning", "summary": summary}
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    if item.get("content") is not None:
        normalized["content"] = _reasoning_parts(item["content"], "reasoning_text",
                                                 f"{param}.content")
    if item.get("status") is not None:
        normalized["status"] = _status(item, param)
    return normalized


_ITEM_KINDS: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _reasoning,
}


def normalize_input(value: str | list[dict[str, Any]], root: str = "input"
                    ) -> list[dict[str, Any]]:
    """Validate ``input`` and return its items in the stored shape (ids where given).
    ``root``: the field the items came in, as errors name it (``items`` for the
    Conversations API)."""
    if isinstance(value, str):
        return [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": value}],
                "status": "completed",
            }
        ]
    items: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        param = f"{root}[{index}]"
        kind = item.get("type", "message")
        build = _ITEM_KINDS.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise _invalid(
                f"Invalid value for '{param}.type': {kind!r} is not a supported input item type.",
                f"{param}.type",
            )
        items.append(build(item, param))
    return items


def validate_tools(tools: Sequence[Mapping[str, Any]]) -> None:
    names: set[str] = set()
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        kind = tool.get("type")
        if kind != "function":
            raise _invalid(
                f"Tool type {kind!r} is not supported by this server; only 'function' tools are.",
                f"{param}.type",
                "unsupported_tool",
            )
        _check_keys(tool, ("type", "name", "description", "parameters", "strict"), param)
        name = _require_str(tool, "name", param)
        if not name or len(name) > 64 or not all(c.isalnum() or c in "_-" for c in name):
            raise _invalid(
                f"Invalid 'tools[{index}].name': must match ^[a-zA-Z0-9_-]{{1,64}}$.",
                f"{param}.name",
            )
        if name in names:
            raise _invalid(f"Duplicate tool name {name!r}.", f"{param}.name")
        names.add(name)
        if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
            raise _invalid(
                f"Invalid type for '{param}.parameters': expected an object.",
                f"{param}.parameters",
                "invalid_type",
            )
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise _invalid(
                f"Invalid type for '{param}.description': expected a string.",
                f"{param}.description",
                "invalid_type",
            )
        if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
            raise _invalid(
                f"Invalid type for '{param}.strict': expected a boolean.",
                f"{param}.strict",
                "invalid_type",
            )


def validate_tool_choice(
    choice: str | Mapping[str, Any], tools: Sequence[Mapping[str, Any]]
) -> None:
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _invalid(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
        if choice == "required" and not tools:
            raise _invalid("'tool_choice' is 'required' but no tools were given.", "tool_choice")
        return
    if choice.get("type") != "function":
        raise _invalid(
            "Only 'none', 'auto', 'required' and function tool choices are supported.",
            "tool_choice.type",
            "unsupported_value",
        )
    _check_keys(choice, ("type", "name"), "tool_choice")
    name = _require_str(choice, "name", "tool_choice")
    if name not in {tool.get("name") for tool in tools}:
        raise _invalid(f"Tool choice {name!r} is not one of the tools given.", "tool_choice.name")
