"""Nesting limits: the walk over decoded values and the scan of bytes too deep to decode
name the same field, and the scan's work is bounded."""

from __future__ import annotations

import json

import pytest

from trio_responses.errors import InvalidRequest
from trio_responses.protocol.nesting import (
    MAX_NESTING_DEPTH,
    SCAN_MAX_BYTES,
    check_depth,
    deep_field,
)
from trio_responses.protocol.request import decode_create_request


def deep(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


def fill(template: str, *values: str) -> str:
    """``template`` with each ``@`` replaced by the next value."""
    for value in values:
        template = template.replace("@", value, 1)
    return template


BODIES = [
    ('{"tools": [{}, {"parameters": @}]}', "tools[1].parameters"),
    ('{"text": {"format": {"schema": @}}}', "text.format.schema"),
    ('{"input": [{"role": "user", "content": [{"x": @}]}]}', "input[0].content"),
    ('{"metadata": @}', "metadata.a.a"),
    ('{"k\\"ey": {"\\u0061": @}}', 'k"ey.a.a'),
]


@pytest.mark.parametrize(("template", "param"), BODIES)
def test_the_walk_and_the_scan_name_the_same_field(template: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as walked:
        check_depth(json.loads(fill(template, deep(MAX_NESTING_DEPTH))))
    assert walked.value.param == param
    assert deep_field(fill(template, deep(100_000)).encode()) == param


def test_within_the_limit_nothing_is_found() -> None:
    body = fill('{"a": @}', deep(MAX_NESTING_DEPTH - 2))
    check_depth(json.loads(body))
    assert deep_field(body.encode()) is None


def test_strings_hide_brackets_from_the_scan() -> None:
    body = fill('{"input": "@", "tools": [@]}', "[{\\\"" * 1000, deep(100))
    assert deep_field(body.encode()) == "tools[0].a"


def test_the_scan_is_bounded() -> None:
    """A deep part past what the scan reads (bytes, or tokens) is not named: the error
    still says what is wrong."""
    filler = "x\\\"" * (SCAN_MAX_BYTES // 2)
    body = fill('{"input": "@", "tools": [@]}', filler, deep(100_000)).encode()
    assert deep_field(body) is None
    with pytest.raises(InvalidRequest) as raised:
        decode_create_request(body)
    assert raised.value.param is None and "nested more than" in raised.value.message
    many = fill('{"input": [@], "tools": [@]}', '"",' * 100_000 + '""', deep(100)).encode()
    assert deep_field(many) is None
