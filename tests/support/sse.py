"""Reading SSE streams in tests, with the framing rules checked on the way.

Streams are read with httpx-sse (:class:`SSEReader`, :func:`read_sse`), as a client
would: ``event:`` equals the payload's ``type``, never an ``id:`` or ``retry:`` field
(the openai SDK's decoder breaks on them), ``data: [DONE]`` last and nothing after it.
Where the bytes themselves are the point (heartbeat comments, whole frames, no ``\\r``),
:func:`parse_raw_sse` checks a complete body byte for byte. (tests/reliability/wire.py
has its own parser: it reads raw sockets on purpose.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from httpx_sse import EventSource


class SSEReader:
    """Events read from one response, in as many ``take`` calls as the test needs (a
    live stream is read, then acted on, then read).

    ``require_done``: the stream ends with a bare ``data: [DONE]`` line, as this
    server's do; without it (any deployment) ``[DONE]`` may be left out.
    """

    def __init__(self, source: EventSource, *, require_done: bool = True) -> None:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        self._sse = source.iter_sse()
        self._require_done = require_done
        self.done = False

    def take(self, count: int | None = None) -> list[dict[str, Any]]:
        """The next ``count`` events, or all of them up to the end of the stream."""
        events: list[dict[str, Any]] = []
        while count is None or len(events) < count:
            sse = next(self._sse, None)
            if sse is None:
                break
            assert not self.done, f"data after [DONE]: {sse}"
            # httpx-sse reports the last event id seen; "" means no id: line ever came.
            assert sse.id == "" and sse.retry is None, sse
            if sse.data == "[DONE]":
                if self._require_done:
                    assert sse.event == "message", sse  # a bare data: line, no event: field
                self.done = True
                continue
            event = json.loads(sse.data)
            assert sse.event == event["type"], (sse.event, event["type"])
            events.append(event)
        if count is None and self._require_done:
            assert self.done, "the stream ended without data: [DONE]"
        return events


def read_sse(source: EventSource, *, count: int | None = None, require_done: bool = True
             ) -> list[dict[str, Any]]:
    """All events to the end of the stream, or only the first ``count`` (the caller then
    closes the connection). A complete body already read: ``EventSource(response)``."""
    return SSEReader(source, require_done=require_done).take(count)


_FRAME = re.compile(rb"event: (?P<type>[a-z_.]+)\ndata: (?P<data>[^\n]+)\n\n"
                    rb"|(?P<comment>: [^\n]*)\n\n")


def parse_raw_sse(raw: bytes) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Events and comment lines of a whole SSE body, byte for byte: only
    ``event:``+``data:`` pairs and ``:`` comments, each ended by one blank line, then
    ``data: [DONE]``; nothing else (no ``id:``, no ``retry:``, no ``\\r``)."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    body = raw[: -len(b"data: [DONE]\n\n")]
    events: list[dict[str, Any]] = []
    comments: list[bytes] = []
    position = 0
    while position < len(body):
        match = _FRAME.match(body, position)
        assert match is not None, body[position:position + 200]
        if match.group("type") is None:
            comments.append(match.group("comment"))
        else:
            event = json.loads(match.group("data"))
            assert event["type"].encode() == match.group("type"), match.group(0)[:200]
            events.append(event)
        position = match.end()
    return events, comments
