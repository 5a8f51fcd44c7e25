"""Compaction requests, sans-io: the body of ``POST /v1/responses/compact`` and the
``context_management`` field of a create request.

A compact body has the create body's fields for what to compact (``model``, ``input``,
``instructions``, ``previous_response_id``, ``prompt_cache_key``, ``service_tier``) and
options that change nothing here (``prompt_cache_options``, ``prompt_cache_retention``,
``image``); it is checked as the create request it is turned into
(:func:`decode_compact_request`), so every error names the same ``param``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .request import CreateResponseRequest, check_create_request, decode_body


class CompactRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: str | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    prompt_cache_key: str | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    # Accepted, no effect here (no explicit prompt cache, no images).
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    image: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(CompactRequest)


def decode_compact_request(body: bytes) -> CreateResponseRequest:
    """A compact body as the (unstored) create request whose prompt it compacts."""
    compact = decode_body(_decoder, body)
    request = CreateResponseRequest(
        model=compact.model, input=compact.input, instructions=compact.instructions,
        previous_response_id=compact.previous_response_id,
        prompt_cache_key=compact.prompt_cache_key, service_tier=compact.service_tier,
        store=False)
    check_create_request(request)
    return request
