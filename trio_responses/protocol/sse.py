"""Server-sent events framing, in the one form every client parses.

Each event is ``event: <type>`` + ``data: <json>`` + a blank line; the stream ends with
``data: [DONE]``. Never an ``id:`` line (after one, the openai SDK turns every later
comment into an empty event and crashes), never ``event:`` without ``data:``, never a
bare ``retry:``. JSON is compact and on one line (msgspec escapes every control
character, so no payload can break a frame). A heartbeat in compatibility mode is an
SSE comment, which clients ignore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

DONE = b"data: [DONE]\n\n"
COMMENT_PING = b": ping\n\n"


def encode_json(value: Any) -> bytes:
    return _encode(value)


def frame(event: Mapping[str, Any]) -> bytes:
    """One event as SSE bytes; ``event:`` always equals the payload's ``type``."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + _encode(event) + b"\n\n"
