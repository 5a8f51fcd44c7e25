"""The body of ``POST /v1/responses/{id}/tool_outputs``: checked before the runtime sees it.

``{"tool_outputs": [{"call_id": str, "output": str}, ...]}``, nothing else. Whether the
call ids are pending is the waiting run's question, not the body's.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest


def parse_tool_outputs(body: Any) -> list[dict[str, Any]]:
    """Validate ``{"tool_outputs": [{"call_id": str, "output": str}, ...]}``."""
    if not isinstance(body, dict) or not isinstance(body.get("tool_outputs"), list):
        raise InvalidRequest("Expected a JSON object with a 'tool_outputs' array.",
                             param="tool_outputs", code="invalid_type")
    unknown = set(body) - {"tool_outputs"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(f"Unknown parameter: '{name}'.", param=name,
                             code="unknown_parameter")
    outputs: list[dict[str, Any]] = body["tool_outputs"]
    if not outputs:
        raise InvalidRequest("'tool_outputs' must not be empty.", param="tool_outputs")
    for index, output in enumerate(outputs):
        where = f"tool_outputs[{index}]"
        if not isinstance(output, dict) or set(output) - {"call_id", "output"}:
            raise InvalidRequest(f"'{where}' must be an object with 'call_id' and 'output'.",
                                 param=where)
        for key in ("call_id", "output"):
            if not isinstance(output.get(key), str):
                raise InvalidRequest(f"'{where}.{key}' must be a string.",
                                     param=f"{where}.{key}", code="invalid_type")
    return outputs
