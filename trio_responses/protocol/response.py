"""The response object: its skeleton from a request, and its usage block.

The skeleton echoes every request parameter OpenAI echoes, with OpenAI's defaults for
the ones left out (or the model's own, for its sampling), so the strict SDK and the Open
Responses spec (``openresponses-types``) parse it at every stage (created, in progress,
final): timestamps are whole Unix seconds, and the sampling penalties are there. Status,
output, usage and errors are filled in by :mod:`.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .request import CreateResponseRequest, conversation_id
from .tooldefs import echo_tools

# Sampling a request gets where neither it nor the model says otherwise.
DEFAULT_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0,
                    "frequency_penalty": 0.0}


def _text_config(request: CreateResponseRequest) -> dict[str, Any]:
    text: dict[str, Any] = {"format": {"type": "text"}, "verbosity": "medium"}
    if request.text is not None:
        if request.text.format is not None:
            text["format"] = msgspec.to_builtins(request.text.format)
            if request.text.format.type == "json_schema":
                # The Open Responses spec requires both. An absent description is
                # echoed as "": OpenAI's schema types it as a string (no null), the
                # spec requires it, and only a string satisfies both. OpenAI's default
                # for strict is false.
                text["format"].setdefault("description", "")
                text["format"].setdefault("strict", False)
        if request.text.verbosity is not None:
            text["verbosity"] = request.text.verbosity
    return text


def new_response(
    request: CreateResponseRequest,
    *,
    response_id: str,
    created_at: float,
    model: str,
    service_tier: str,
    sampling_defaults: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The response as it is at ``response.created``. ``sampling_defaults``: the model's
    own sampling for fields the request leaves unset (the engine's)."""
    sampling = {**DEFAULT_SAMPLING, **{key: value for key, value in (sampling_defaults or {})
                                       .items() if key in DEFAULT_SAMPLING}}
    reasoning: dict[str, Any] = {"effort": None, "summary": None}
    if request.reasoning is not None:
        reasoning.update({"effort": request.reasoning.effort, "summary": request.reasoning.summary})
    background = bool(request.background)
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),  # whole Unix seconds, as OpenAI sends them
        "status": "queued" if background else "in_progress",
        "background": background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "metadata": dict(request.metadata or {}),
        "model": model,
        "output": [],
        "parallel_tool_calls": (
            True if request.parallel_tool_calls is None else request.parallel_tool_calls
        ),
        "previous_response_id": request.previous_response_id,
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_retention": request.prompt_cache_retention,
        "reasoning": reasoning,
        "safety_identifier": request.safety_identifier,
        "service_tier": service_tier,
        "store": request.store is not False,
        "temperature": (
            sampling["temperature"] if request.temperature is None else request.temperature
        ),
        "text": _text_config(request),
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": echo_tools(request.tools or ()),
        "top_logprobs": request.top_logprobs if request.top_logprobs is not None else 0,
        "top_p": sampling["top_p"] if request.top_p is None else request.top_p,
        "presence_penalty": sampling["presence_penalty"],
        "frequency_penalty": sampling["frequency_penalty"],
        "truncation": request.truncation or "disabled",
        "usage": None,
        "user": request.user,
    }
    conversation = conversation_id(request)
    if conversation is not None:
        response["conversation"] = {"id": conversation}
    if request.client_metadata is not None:
        # Not a field of OpenAI's response object: sent only to clients that sent it.
        response["client_metadata"] = request.client_metadata
    return response


def usage(
    *, input_tokens: int, output_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> dict[str, Any]:
    # vLLM's prefix cache is automatic: nothing is "written" on request, so
    # cache_write_tokens (OpenAI's explicit-cache figure) is always 0 here.
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }
