"""From a checked create request to what the engine gets: its input items with ids, and
its first engine request (sampling, priority, tools).

Pure functions over the request: the checks that need the engine or the store (the
model, the ``previous_response_id`` chain, the conversation) stay in
:class:`ResponseService.prepare`, which puts the pieces together in a
:class:`PreparedRequest`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..engine.base import EngineRequest, SamplingOptions
from ..protocol.ids import IdFactory, item_id
from ..protocol.items import normalize_input
from ..protocol.request import CreateResponseRequest, stop_sequences
from .conversations import ConversationTurn
from .tools import ToolPlan

# Service tier → engine priority (vLLM: lower runs first).
TIER_PRIORITY = {"priority": -10, "default": 0, "auto": 0, "scale": 0, "flex": 10}
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# Output tokens of a request that sets no max_output_tokens, where the model's generation
# config names no max_new_tokens (the context's room caps it further, in the engine).
DEFAULT_MAX_OUTPUT_TOKENS = 4096


@dataclass(frozen=True)
class PreparedRequest:
    """A create request checked and turned into its first engine request."""

    request: CreateResponseRequest
    engine_request: EngineRequest
    # The request's input, normalized, each item with its id.
    input_items: tuple[dict[str, Any], ...]
    service_tier: str
    # How its function calls work; None: no tools in play.
    tools: ToolPlan | None
    # Its hold on its conversation (the history read, the lock its run lets go); None:
    # no conversation, or prepared only to count its tokens.
    conversation: ConversationTurn | None = None
    # History and input as the prompt has them (sealed content opened, compactions in
    # place of what they stand for).
    prompt_items: tuple[Mapping[str, Any], ...] = ()
    # The compaction its run makes first (context_management over the threshold, or a
    # compaction_trigger): the summary request's prompt tokens and most output tokens
    # (None: no compaction), and how the first engine request is rebuilt from the
    # compacted prompt items.
    compaction_budget: tuple[int, int] | None = None
    rebuild: Callable[[list[Mapping[str, Any]]], EngineRequest] | None = None
    # Its input ended with a compaction_trigger: the compaction is its whole output.
    compaction_only: bool = False


def items_with_ids(request: CreateResponseRequest, ids: IdFactory) -> list[dict[str, Any]]:
    """The request's input as items, each with an id (its own, or a new one)."""
    assert request.input is not None
    items = normalize_input(request.input)
    for item in items:
        item.setdefault("id", item_id(ids, item["type"]))
    return items


def sampling_options(request: CreateResponseRequest, default_max_tokens: int | None = None
                     ) -> SamplingOptions:
    """``default_max_tokens``: the model's own output limit for a request that sets none
    (its generation config's ``max_new_tokens``, as vLLM's server applies it)."""
    fmt = request.text.format if request.text else None
    logprobs = LOGPROBS_INCLUDE in (request.include or ())
    return SamplingOptions(
        max_tokens=request.max_output_tokens or default_max_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
        temperature=request.temperature,
        top_p=request.top_p,
        top_logprobs=(request.top_logprobs or 0) if logprobs else None,
        top_k=request.top_k,
        min_p=request.min_p,
        repetition_penalty=request.repetition_penalty,
        seed=request.seed,
        stop=stop_sequences(request),
        ignore_eos=bool(request.ignore_eos),
        json_schema=fmt.schema if fmt is not None and fmt.type == "json_schema" else None,
        json_object=fmt is not None and fmt.type == "json_object",
    )


def cache_salt(owner: str, request: CreateResponseRequest) -> str | None:
    """The engine's prefix-cache salt: the owner (the API key), and within it the
    client's ``cache_salt`` or ``prompt_cache_key``, so cached prefixes are never shared
    across keys (a key's ``cached_tokens`` would tell it what another key sent), and
    within a key only as the client asks. Hashed: the owner is not written into engine
    logs, and neither part can run into the other. An open server's requests without a
    key of their own share the whole cache (None), as there is one tenant."""
    client = request.cache_salt or request.prompt_cache_key
    if not owner and client is None:
        return None
    scoped = hashlib.sha256(f"{owner}\0{client or ''}".encode("utf-8", "surrogatepass"))
    return scoped.hexdigest()


def first_engine_request(
    request: CreateResponseRequest, request_id: str, messages: list[dict[str, Any]],
    tier: str, tools: ToolPlan | None, owner: str = "",
    default_max_tokens: int | None = None,
) -> EngineRequest:
    """The engine request of the response's first model turn, for ``owner``."""
    engine_request = EngineRequest(
        request_id=request_id,
        messages=tuple(messages),
        sampling=sampling_options(request, default_max_tokens),
        cache_salt=cache_salt(owner, request),
        priority=request.priority if request.priority is not None else TIER_PRIORITY[tier],
        truncate=request.truncation == "auto",
        reasoning_effort=request.reasoning.effort if request.reasoning else None,
    )
    return engine_request if tools is None else tools.first_turn(engine_request)
