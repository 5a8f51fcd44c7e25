"""The response object: its skeleton from a request, and its usage block.

The skeleton echoes every request parameter OpenAI echoes, with OpenAI's defaults for
the ones left out, so the strict SDK parses it at every stage (created, in progress,
final). Status, output, usage and errors are filled in by :mod:`.events`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .request import CreateResponseRequest, conversation_id

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict", True),
    }


def _text_config(request: CreateResponseRequest) -> dict[str, Any]:
    text: dict[str, Any] = {"format": {"type": "text"}, "verbosity": "medium"}
    if request.text is not None:
        if request.text.format is not None:
            text["format"] = msgspec.to_builtins(request.text.format)
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
) -> dict[str, Any]:
    """The response as it is at ``response.created``."""
    reasoning: dict[str, Any] = {"effort": None, "summary": None}
    if request.reasoning is not None:
        reasoning.update({"effort": request.reasoning.effort, "summary": request.reasoning.summary})
    background = bool(request.background)
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
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
            DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
        ),
        "text": _text_config(request),
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": [_tool(tool) for tool in request.tools or ()],
        "top_logprobs": request.top_logprobs if request.top_logprobs is not None else 0,
        "top_p": DEFAULT_TOP_P if request.top_p is None else request.top_p,
        "truncation": request.truncation or "disabled",
        "usage": None,
        "user": request.user,
    }
    conversation = conversation_id(request)
    if conversation is not None:
        response["conversation"] = {"id": conversation}
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
