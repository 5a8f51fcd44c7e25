"""How deep a request's JSON may nest, and which field went deeper.

Free-form JSON (tool parameters, a ``json_schema``, input items …) is echoed in the
response, copied into events and encoded again; each of those recurses once per level,
and Python's recursion runs out near 1,000 frames. So a request may nest at most
:data:`MAX_NESTING_DEPTH` levels anywhere, and a deeper one is a 400 naming the field
(``tools[0].parameters``): :func:`check_depth` walks a decoded body without recursion;
:func:`deep_field` finds the field in raw bytes too deep for the decoder itself (which
raises ``RecursionError`` past ~900 levels), with a scan that stops at the first level
too deep, or after :data:`SCAN_MAX_TOKENS` tokens or :data:`SCAN_MAX_BYTES` (a Python
loop: a body of millions of small tokens must not hold the event loop; its error then
names no field).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec

from ..errors import InvalidRequest

# Levels of objects and arrays a request may nest, counting the body itself (JSON
# schemas in the wild use a dozen at most).
MAX_NESTING_DEPTH = 64
# The levels a depth error names, counting the body as 1: ``tools[0].parameters`` is
# at 4, and so is ``text.format.schema``; deeper, the error names the level-4 field.
NAMED_DEPTH = 4

# The most deep_field reads: tokens (~0.1 s), and bytes (~0.05 s of long strings).
SCAN_MAX_TOKENS = 50_000
SCAN_MAX_BYTES = 1 << 20
# A JSON string (one cut by the end of the scan ends without its quote), a bracket, or a
# comma: all the scan needs (numbers and literals are skipped without a match).
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?P<closed>"?)|[\[\]{},]')


def too_deep(param: str | None) -> InvalidRequest:
    what = f"Invalid '{param}': nested" if param else "The JSON body is nested"
    return InvalidRequest(f"{what} more than {MAX_NESTING_DEPTH} levels deep.", param=param,
                          code="invalid_value")


def check_depth(value: Any, param: str = "", depth: int = 1) -> None:
    """Raise a 400 naming the field if ``value`` — a decoded body (its structs' fields
    are its members), or the field ``param`` at level ``depth`` of one — nests deeper
    than the limit."""
    stack: list[tuple[Any, int, str]] = [(value, depth, param)]
    while stack:
        current, level, path = stack.pop()
        if level > MAX_NESTING_DEPTH:
            raise too_deep(path or None)
        for key, child in _members(current):
            if isinstance(child, dict | list | msgspec.Struct):
                named = _step(path, key) if level < NAMED_DEPTH else path
                stack.append((child, level + 1, named))


def _members(value: Any) -> Iterator[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, list):
        return enumerate(value)
    if isinstance(value, msgspec.Struct):
        return ((name, getattr(value, name)) for name in value.__struct_fields__)
    return iter(())


def deep_field(body: bytes) -> str | None:
    """The field (named as :func:`check_depth` names it) of the first value in ``body``
    nested deeper than the limit; None if there is none or the body is not an object."""
    # Per open container: whether it is an object, its path, and its element count.
    open_: list[tuple[bool, str, int]] = []
    key: bytes | None = None  # the last string: a container's key, in an object
    for count, match in enumerate(_TOKEN.finditer(body, 0, SCAN_MAX_BYTES)):
        token = match.group()
        if count >= SCAN_MAX_TOKENS or (token[0] == ord('"') and not match.group("closed")):
            return None  # scanned enough, or a string the scan's end cut
        if token == b",":
            if open_:
                is_object, path, elements = open_[-1]
                open_[-1] = (is_object, path, elements + 1)
        elif token[0] == ord('"'):
            key = token
        elif token in (b"]", b"}"):
            if open_:
                open_.pop()
        else:
            path = _child_path(open_, key)
            open_.append((token == b"{", path, 0))
            if len(open_) > MAX_NESTING_DEPTH:
                return path or None
    return None


def _child_path(open_: list[tuple[bool, str, int]], key: bytes | None) -> str:
    """The path of a container opening inside ``open_`` (the last string seen is its key
    when its parent is an object)."""
    if not open_:
        return ""
    is_object, path, elements = open_[-1]
    if len(open_) >= NAMED_DEPTH:
        return path
    if not is_object:
        return _step(path, elements)
    try:
        name = json.loads(key) if key is not None else "?"
    except ValueError:
        name = "?"
    return _step(path, str(name))


def _step(path: str, key: str | int) -> str:
    """``path`` one level down, at ``key`` (an index, or a name)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
