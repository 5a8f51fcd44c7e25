"""SSE framing (RELIABILITY row 8): whatever the text, a standard SSE parser (httpx-sse)
and the openai SDK's own decoder give back exactly the events sent, cut into chunks
anywhere, with ``event:`` equal to the payload's ``type`` and no ``id:`` line ever."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any

from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from tests.protocol.builders import USAGE, deltas, new_builder
from trio_responses.protocol.events import Emitted
from trio_responses.protocol.sse import COMMENT_PING, DONE, encode_json, frame


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` cut at the given (sorted, deduplicated) offsets."""
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        yield data[start:cut]
        start = cut
    yield data[start:]


def httpx_sse_parse(chunks: Iterator[bytes]) -> list[Any]:
    """httpx-sse's line splitting (CR, LF, CRLF only) and event decoder, over raw chunks."""
    text = codecs.getincrementaldecoder("utf-8")()
    lines, decoder, events = SSELineDecoder(), HttpxSSEDecoder(), []
    for chunk in chunks:
        for line in lines.decode(text.decode(chunk)) if chunk else []:
            sse = decoder.decode(line)
            if sse is not None:
                events.append(sse)
    for line in lines.flush():
        sse = decoder.decode(line)
        if sse is not None:
            events.append(sse)
    return events


def build_stream(texts: list[str], how: str, pings: bool) -> tuple[list[Emitted], bytes]:
    builder = new_builder()
    emitted = builder.created() + builder.in_progress()
    wire = b"".join(data for _, data in emitted)
    for text in texts:
        batch = builder.text(text)
        emitted += batch
        wire += b"".join(data for _, data in batch)
        if pings:
            wire += COMMENT_PING
    end = (builder.cancel(usage=USAGE) if how == "cancel"
           else builder.fail("boom") if how == "fail"
           else builder.complete(usage=USAGE, at=1.0))
    emitted += end
    wire += b"".join(data for _, data in end) + DONE
    return emitted, wire


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(deltas, max_size=8), how=st.sampled_from(["complete", "cancel", "fail"]),
       pings=st.booleans(), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_frames_round_trip_through_standard_and_sdk_parsers(
    texts: list[str], how: str, pings: bool, cuts: list[int]
) -> None:
    emitted, wire = build_stream(texts, how, pings)
    events = [event for event, _ in emitted]

    # Only the three framing forms this server sends; never id:, retry: or a bare event:.
    lines = wire.split(b"\n")
    for index, line in enumerate(lines):
        assert b"\r" not in line
        assert not line.startswith((b"id:", b"retry:"))
        if line.startswith(b"event: "):
            assert lines[index + 1].startswith(b"data: ")
        else:
            assert line in (b"", b": ping", b"data: [DONE]") or line.startswith(b"data: {")

    parsed = httpx_sse_parse(chunked(wire, cuts))
    assert [sse.event for sse in parsed] == [e["type"] for e in events] + ["message"]
    assert [json.loads(sse.data) for sse in parsed[:-1]] == events
    assert parsed[-1].data == "[DONE]"
    assert all(sse.id == "" and sse.retry is None for sse in parsed)

    sdk = list(OpenAISSEDecoder().iter_bytes(chunked(wire, cuts)))
    assert [sse.event for sse in sdk] == [e["type"] for e in events] + [None]
    assert [sse.json() for sse in sdk[:-1]] == events
    assert sdk[-1].data == "[DONE]"
    assert all(sse.id is None for sse in sdk)
    # The exact JSON text of each event is what the client gets.
    assert [sse.data.encode() for sse in sdk[:-1]] == [encode_json(e) for e in events]


def test_frame_shape() -> None:
    event = {"type": "response.output_text.delta", "sequence_number": 4,
             "delta": "a\nb\r\nc\x00\u2028"}
    data = frame(event)
    head, body, tail = data.split(b"\n", 2)
    assert head == b"event: response.output_text.delta"
    assert body.startswith(b"data: ") and json.loads(body[6:]) == event
    assert tail == b"\n"
    assert data.count(b"\n") == 3 and b"\r" not in data and b"\x00" not in data
    assert DONE == b"data: [DONE]\n\n" and COMMENT_PING == b": ping\n\n"


def test_comment_pings_are_invisible_to_the_sdk() -> None:
    """A ``: ping`` comment yields no event in the SDK's decoder (no id: was ever sent),
    even between events and before the first one."""
    event = {"type": "response.created", "sequence_number": 0}
    wire = COMMENT_PING + frame(event) + COMMENT_PING * 3 + DONE
    sdk = list(OpenAISSEDecoder().iter_bytes(iter([wire])))
    assert [sse.data for sse in sdk] == [encode_json(event).decode(), "[DONE]"]
