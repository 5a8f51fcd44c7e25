"""Server-sent events framing, in the one form every client parses.

Each event is ``event: <type>`` + ``data: <json>`` + a blank line; the stream ends with
``data: [DONE]``. Never an ``id:`` line (after one, the openai SDK turns every later
comment into an empty event and crashes), never ``event:`` without ``data:``, never a
bare ``retry:``. JSON is compact and on one line (msgspec escapes every control
character, so no payload can break a frame). A heartbeat is an SSE comment, which every
client skips (unless a stream asked for ``response.ping`` events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

DONE = b"data: [DONE]\n\n"
COMMENT_PING = b": ping\n\n"


# Line separators JSON allows raw in strings but some line readers split on (httpx's
# iter_lines, Python's str.splitlines): always escaped. In UTF-8 these byte sequences
# can only be these characters, so replacing bytes is exact.
_LINE_BREAKERS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"),
                  (b"\xc2\x85", b"\\u0085"))


def encode_json(value: Any) -> bytes:
    data = _encode(value)
    for raw, escaped in _LINE_BREAKERS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def frame(event: Mapping[str, Any]) -> bytes:
    """One event as SSE bytes; ``event:`` always equals the payload's ``type``."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + encode_json(event) + b"\n\n"


_DATA = b"\ndata: "


def frame_payload(data: bytes) -> bytes:
    """The JSON of one event frame made by :func:`frame` (what a WebSocket sends as its
    text message), sliced out of the SSE bytes rather than encoded again."""
    return data[data.index(_DATA) + len(_DATA):-2]
