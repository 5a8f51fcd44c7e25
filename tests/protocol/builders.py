"""Small factories shared by the protocol and runtime tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from trio_responses.protocol.events import ResponseEvents
from trio_responses.protocol.ids import counting_ids
from trio_responses.protocol.request import CreateResponseRequest
from trio_responses.protocol.response import new_response, usage

USAGE = usage(input_tokens=3, output_tokens=5, cached_tokens=1)


def new_builder(
    *, background: bool = False, max_event_bytes: int = 0, **request: Any
) -> ResponseEvents:
    """A fresh ResponseEvents for a minimal request, with deterministic ids."""
    body = CreateResponseRequest(model="m", input="hi", background=background or None,
                                 **request)
    response = new_response(body, response_id="resp_test", created_at=1700000000.0,
                            model="m", service_tier="default")
    return ResponseEvents(response, counting_ids(), max_event_bytes=max_event_bytes)


def logprob(token: str) -> dict[str, Any]:
    """A logprob in the output_text part's shape (with bytes)."""
    raw = list(token.encode())
    return {"token": token, "bytes": raw, "logprob": -0.5,
            "top_logprobs": [{"token": token, "bytes": raw, "logprob": -0.5}]}


# Text that has broken SSE framings: line ends, NUL, Unicode line separators, emoji.
AWKWARD = ["\n", "\r\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "\ufeff", "😀",
           "👩\u200d👩\u200d👧", "é", "\t", "data: x\n\nevent: y\n", ": ping\n\n", "[DONE]",
           '"}', "\\", "\x1b[0m", "\U0010ffff"]

deltas = st.one_of(
    st.text(max_size=40),
    st.sampled_from(AWKWARD),
    st.lists(st.sampled_from(AWKWARD), max_size=8).map("".join),
    # Occasionally a long one (up to 64 KiB of one repeated piece).
    st.builds(lambda piece, n: piece * n, st.sampled_from(["a", "é", "😀", "\r\n", "\x00"]),
              st.integers(1000, 65536)),
)
