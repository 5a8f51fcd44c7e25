"""Small checks on request JSON that raise OpenAI's errors, each naming its ``param``.

Shared by the input items (:mod:`.items`) and the tools (:mod:`.tooldefs`): a missing or
mistyped string, and keys an object may not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest


def invalid(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def require_str(item: Mapping[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if value is None:
        raise invalid(
            f"Missing required parameter: '{param}.{key}'.",
            f"{param}.{key}",
            "missing_required_parameter",
        )
    if not isinstance(value, str):
        raise invalid(
            f"Invalid type for '{param}.{key}': expected a string, but got "
            f"{type(value).__name__} instead.",
            f"{param}.{key}",
            "invalid_type",
        )
    return value


def check_keys(item: Mapping[str, Any], allowed: Sequence[str], param: str) -> None:
    for key in item:
        if key not in allowed:
            raise invalid(
                f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}", "unknown_parameter"
            )
