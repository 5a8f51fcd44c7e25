"""Input items: validation, and the one stored shape each item takes.

Clients send items in several shapes (a bare string, ``{"role", "content"}`` messages,
typed messages, output items replayed verbatim as openai-agents does, function and
custom tool calls and their outputs). :func:`normalize_input` checks them and returns
one canonical list, the form stored and listed by ``GET /v1/responses/{id}/input_items``
(ids are added by the caller). Every refusal names the offending ``param``
(``input[2].content[0].type``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .checks import check_keys, invalid, require_str

ROLES = ("user", "assistant", "system", "developer")
ITEM_STATUSES = ("in_progress", "completed", "incomplete")
TEXT_PART_TYPES = ("input_text", "output_text")
UNSUPPORTED_PART_TYPES = ("input_image", "input_file", "input_audio")


def _status(item: Mapping[str, Any], param: str) -> str:
    status = item.get("status")
    if status is None:
        return "completed"
    if status not in ITEM_STATUSES:
        raise invalid(f"Invalid value for '{param}.status': {status!r}.", f"{param}.status")
    return str(status)


def _content(content: Any, role: str, param: str) -> list[dict[str, Any]]:
    output = role == "assistant"
    if isinstance(content, str):
        return [_text_part(content, output)]
    if not isinstance(content, list):
        raise invalid(
            f"Invalid type for '{param}.content': expected a string or an array of content parts.",
            f"{param}.content",
            "invalid_type",
        )
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        if not isinstance(part, dict):
            raise invalid(
                f"Invalid type for '{where}': expected an object.", where, "invalid_type"
            )
        kind = part.get("type")
        if kind in TEXT_PART_TYPES:
            check_keys(part, ("type", "text", "annotations", "logprobs"), where)
            parts.append(_text_part(require_str(part, "text", where), output))
        elif kind == "refusal":
            if not output:
                raise invalid(
                    f"Invalid value for '{where}.type': 'refusal' content is only allowed "
                    "in assistant messages.",
                    f"{where}.type",
                )
            check_keys(part, ("type", "refusal"), where)
            parts.append({"type": "refusal", "refusal": require_str(part, "refusal", where)})
        elif kind in UNSUPPORTED_PART_TYPES:
            raise invalid(
                f"'{kind}' content is not supported by this model.",
                f"{where}.type",
                "unsupported_content",
            )
        else:
            raise invalid(f"Invalid value for '{where}.type': {kind!r}.", f"{where}.type")
    return parts


def _text_part(text: str, output: bool) -> dict[str, Any]:
    if output:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _message(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    check_keys(item, ("type", "role", "content", "status", "id", "phase"), param)
    role = item.get("role")
    if role not in ROLES:
        raise invalid(
            f"Invalid value for '{param}.role': {role!r}; expected one of {', '.join(ROLES)}.",
            f"{param}.role",
        )
    if "content" not in item:
        raise invalid(
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


def _tool_call(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    """A ``function_call`` (``arguments``) or ``custom_tool_call`` (``input``), with the
    ``namespace`` of a namespaced tool."""
    kind = item["type"]
    payload = "arguments" if kind == "function_call" else "input"
    # caller/async: newer SDK fields on replayed calls, accepted and dropped.
    check_keys(item, ("type", "id", "call_id", "name", payload, "status", "namespace",
                      "caller", "async"), param)
    normalized = {
        "type": kind,
        "call_id": require_str(item, "call_id", param),
        "name": require_str(item, "name", param),
        payload: require_str(item, payload, param),
        "status": _status(item, param),
    }
    if item.get("namespace") is not None:
        normalized["namespace"] = require_str(item, "namespace", param)
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    return normalized


def _tool_call_output(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    """A ``function_call_output`` or ``custom_tool_call_output``: its text."""
    check_keys(item, ("type", "id", "call_id", "output", "status", "name", "namespace",
                      "caller"), param)
    output = item.get("output")
    if isinstance(output, list):
        output = "".join(part["text"] for part in _content(output, "user", param) if "text" in part)
    elif not isinstance(output, str):
        raise invalid(
            f"Invalid type for '{param}.output': expected a string.",
            f"{param}.output",
            "invalid_type",
        )
    normalized = {
        "type": item["type"],
        "call_id": require_str(item, "call_id", param),
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
        raise invalid(f"Invalid type for '{param}': expected an array.", param, "invalid_type")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise invalid(f"Invalid type for '{where}': expected an object.", where,
                           "invalid_type")
        if part.get("type") != kind:
            raise invalid(f"Invalid value for '{where}.type': expected '{kind}'.",
                           f"{where}.type")
        check_keys(part, ("type", "text"), where)
        parts.append({"type": kind, "text": require_str(part, "text", where)})
    return parts


def _reasoning(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    check_keys(item, ("type", "id", "summary", "content", "encrypted_content", "status"), param)
    summary = _reasoning_parts(item.get("summary", []), "summary_text", f"{param}.summary")
    normalized: dict[str, Any] = {"type": "reasoning", "summary": summary}
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    if item.get("content") is not None:
        normalized["content"] = _reasoning_parts(item["content"], "reasoning_text",
                                                 f"{param}.content")
    sealed = item.get("encrypted_content")
    if sealed is not None:
        if not isinstance(sealed, str):
            raise invalid(f"Invalid type for '{param}.encrypted_content': expected a string.",
                          f"{param}.encrypted_content", "invalid_type")
        # Opened (and checked) by the runtime, which holds the keys.
        normalized["encrypted_content"] = sealed
    if item.get("status") is not None:
        normalized["status"] = _status(item, param)
    return normalized


def _compaction(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    """A ``compaction`` item (from ``/v1/responses/compact`` or ``context_management``):
    its sealed summary, opened by the runtime, which holds the keys."""
    check_keys(item, ("type", "id", "encrypted_content", "created_by", "status"), param)
    normalized: dict[str, Any] = {"type": "compaction",
                                  "encrypted_content": require_str(item, "encrypted_content",
                                                                   param)}
    for key in ("id", "created_by"):
        if isinstance(item.get(key), str):
            normalized[key] = item[key]
    return normalized


def _compaction_trigger(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    """``compaction_trigger`` (last input item only): compact instead of answering."""
    check_keys(item, ("type", "id"), param)
    normalized: dict[str, Any] = {"type": "compaction_trigger"}
    if isinstance(item.get("id"), str):
        normalized["id"] = item["id"]
    return normalized


_ITEM_KINDS: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "message": _message,
    "function_call": _tool_call,
    "function_call_output": _tool_call_output,
    "custom_tool_call": _tool_call,
    "custom_tool_call_output": _tool_call_output,
    "reasoning": _reasoning,
    "compaction": _compaction,
    "compaction_trigger": _compaction_trigger,
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
            raise invalid(
                f"Invalid value for '{param}.type': {kind!r} is not a supported input item type.",
                f"{param}.type",
            )
        if kind == "compaction_trigger" and index != len(value) - 1:
            raise invalid(f"Invalid value for '{param}.type': a 'compaction_trigger' must be "
                          "the final input item.", f"{param}.type")
        items.append(build(item, param))
    return items
