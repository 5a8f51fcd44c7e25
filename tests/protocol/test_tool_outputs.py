"""The tool-outputs body, checked sans-io before the runtime sees it."""

from __future__ import annotations

from typing import Any

import pytest

from trio_responses.errors import InvalidRequest
from trio_responses.protocol.tool_outputs import parse_tool_outputs


def test_a_valid_body_is_its_outputs() -> None:
    outputs = [{"call_id": "call_1", "output": "sunny"}, {"call_id": "call_2", "output": ""}]
    assert parse_tool_outputs({"tool_outputs": outputs}) == outputs


@pytest.mark.parametrize(("body", "param", "code"), [
    ([], "tool_outputs", "invalid_type"),
    ({"tool_outputs": "x"}, "tool_outputs", "invalid_type"),
    ({"tool_outputs": [], "extra": 1}, "extra", "unknown_parameter"),
    ({"tool_outputs": []}, "tool_outputs", None),
    ({"tool_outputs": ["x"]}, "tool_outputs[0]", None),
    ({"tool_outputs": [{"call_id": "c", "output": "o", "more": 1}]}, "tool_outputs[0]", None),
    ({"tool_outputs": [{"call_id": 1, "output": "o"}]}, "tool_outputs[0].call_id",
     "invalid_type"),
    ({"tool_outputs": [{"call_id": "c"}]}, "tool_outputs[0].output", "invalid_type"),
])
def test_a_bad_body_is_a_400_naming_its_param(body: Any, param: str, code: str | None
                                             ) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_tool_outputs(body)
    assert (info.value.status, info.value.param, info.value.code) == (400, param, code)
