"""Compaction: a history that outgrows the context, replaced by a summary the model writes.

``POST /v1/responses/compact``, and a create request whose ``context_management`` asks
for it when its prompt is over the threshold, run one engine turn that summarizes the
prompt (:func:`summarize`). The result is one ``compaction`` item whose
``encrypted_content`` seals (:mod:`.sealing`, purpose ``compaction``) the summary and the
text of every user message it covers. A later request with that item in its input (or
its history) gets, in its prompt, the summary and then those user messages, in place of
everything before the item (:func:`prompt_items`): a compaction item stands for all that
came before it.

Why the user messages are inside the seal, not beside it as OpenAI's documentation
describes: the official SDK's ``CompactedResponse.output`` only parses output items, and
a user message is not one (strict validation refuses it); the sealed copy keeps them all
the same.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ..engine.base import Engine, EngineDelta, EngineRequest
from ..engine.summary_prompt import SUMMARY_INSTRUCTION, SUMMARY_PREFIX
from ..errors import InvalidRequest
from ..protocol.ids import IdFactory, item_id
from .run import TokenCounts
from .sealed_items import open_history_items, open_input_items
from .sealing import Sealer, SealError

COMPACTION = "compaction"
# The last input item of a create request that asks for a compaction instead of an
# answer (Codex's remote compaction, the TypeScript SDK's tool runner).
TRIGGER = "compaction_trigger"
# The summary's length: a quarter of the prompt, within these bounds (measured: the
# default model, given 512, repeats itself to the limit and makes the "compacted" prompt
# longer than the history).
SUMMARY_MAX_TOKENS = 512
SUMMARY_MIN_TOKENS = 64
# A context_management entry without compact_threshold: this share of the context.
DEFAULT_THRESHOLD_SHARE = 0.8


@dataclasses.dataclass(frozen=True, slots=True)
class Compacted:
    """A summary written and sealed: the item's sealed content and what it cost."""

    encrypted_content: str
    tokens: TokenCounts
    # What it stands for in a prompt (restored_items()).
    summary: str
    user_texts: tuple[str, ...]


def seal_compaction(sealer: Sealer, summary: str, user_texts: Sequence[str]) -> str:
    payload = {"summary": summary, "user_messages": list(user_texts)}
    return sealer.seal(COMPACTION, json.dumps(payload, ensure_ascii=False).encode())


def open_compaction(sealer: Sealer, value: str) -> tuple[str, list[str]]:
    """The summary and user messages sealed in a compaction item; raises SealError."""
    try:
        payload = json.loads(sealer.open(COMPACTION, value))
    except ValueError as exc:  # SealError is one; bad JSON inside a good seal is not
        raise SealError(str(exc)) from exc
    summary = payload.get("summary") if isinstance(payload, dict) else None
    users = payload.get("user_messages") if isinstance(payload, dict) else None
    if not isinstance(summary, str) or not isinstance(users, list) \
            or not all(isinstance(text, str) for text in users):
        raise SealError("no compaction summary inside")
    return summary, users


def _user_message(text: str, **marks: Any) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}],
            **marks}


def restored_items(summary: str, user_texts: Sequence[str]) -> list[Mapping[str, Any]]:
    """What a compaction item stands for in a prompt: the summary, then the user
    messages (the last of which is usually what the model is to answer)."""
    return [_user_message(SUMMARY_PREFIX + summary, compaction_summary=True),
            *(_user_message(text) for text in user_texts)]


def user_texts(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The text of every user message among prompt items (not a restored summary)."""
    return ["".join(part.get("text") or "" for part in item.get("content") or ())
            for item in items
            if item.get("type") == "message" and item.get("role") == "user"
            and not item.get("compaction_summary")]


def prompt_items(sealer: Sealer, history: Sequence[Mapping[str, Any]],
                 items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """History and input as the prompt sees them: sealed reasoning opened, and the last
    compaction item in place of everything before it. Sealed content of the request's
    own input that does not open is a 400 naming it; in the stored history, reasoning
    that no longer opens is left out, and a compaction that no longer opens stands for
    nothing (what was before it is gone either way)."""
    opened = [item for item in (*open_history_items(sealer, history),
                                *open_input_items(sealer, items))
              if item.get("type") != TRIGGER]
    for index in range(len(opened) - 1, -1, -1):
        item = opened[index]
        if item.get("type") != COMPACTION:
            continue
        try:
            summary, users = open_compaction(sealer, str(item.get("encrypted_content")))
        except SealError as exc:
            own = index - len(history)
            if own >= 0:
                raise InvalidRequest(
                    f"The encrypted content of 'input[{own}]' (a compaction item) could not "
                    f"be opened: {exc}.", param=f"input[{own}].encrypted_content",
                    code="invalid_encrypted_content") from exc
            return [item for item in opened[index + 1:] if item.get("type") != COMPACTION]
        return [*restored_items(summary, users), *opened[index + 1:]]
    return opened


def summary_request(request: EngineRequest, max_tokens: int = SUMMARY_MAX_TOKENS
                    ) -> EngineRequest:
    """The engine request that writes the summary of ``request``'s prompt: the same
    messages and a last user message asking for it; no tools, no structured output."""
    messages = [*request.messages, {"role": "user", "content": SUMMARY_INSTRUCTION}]
    sampling = dataclasses.replace(request.sampling, max_tokens=max_tokens, json_schema=None,
                                   json_object=False, grammar=None, ignore_eos=False)
    return dataclasses.replace(request, request_id=f"{request.request_id}_compact",
                               messages=tuple(messages), sampling=sampling, tools=(),
                               parse_tool_calls=False, truncate=True)


def summary_tokens(prompt_tokens: int) -> int:
    """The most tokens a summary of a prompt of ``prompt_tokens`` may take."""
    return max(SUMMARY_MIN_TOKENS, min(SUMMARY_MAX_TOKENS, prompt_tokens // 4))


async def summary_budget(engine: Engine, request: EngineRequest) -> tuple[int, int]:
    """What summarizing ``request``'s prompt may cost: the summary request's prompt
    tokens (the prompt and the instruction, characters ÷ 4 for the latter) and the most
    tokens the summary may take."""
    return budget_of(await engine.count_tokens(request))


def budget_of(prompt_tokens: int) -> tuple[int, int]:
    """:func:`summary_budget` of a prompt of ``prompt_tokens``."""
    return prompt_tokens + -(-len(SUMMARY_INSTRUCTION) // 4), summary_tokens(prompt_tokens)


async def summarize(engine: Engine, request: EngineRequest, max_tokens: int | None = None
                    ) -> tuple[str, TokenCounts]:
    """The model's summary of ``request``'s prompt (its answer text; its reasoning only
    when it wrote nothing else), and the tokens it took; at most ``max_tokens`` (None:
    :func:`summary_tokens` of the prompt). The engine request is aborted if this is
    cancelled."""
    limit = max_tokens if max_tokens is not None \
        else summary_tokens(await engine.count_tokens(request))
    stream = await engine.submit(summary_request(request, limit))
    text: list[str] = []
    reasoning: list[str] = []
    counts = TokenCounts()
    try:
        async for delta in stream:
            text.append(delta.text)
            reasoning.append(delta.reasoning)
            counts = TokenCounts.of(delta)
            if delta.finish_reason is not None:
                break
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
    # A model whose reasoning parser took all it wrote as reasoning (one that never
    # closes its thinking) still has written a summary.
    return ("".join(text).strip() or "".join(reasoning).strip()), counts


async def compact(engine: Engine, sealer: Sealer, request: EngineRequest,
                  items: Sequence[Mapping[str, Any]], max_tokens: int | None = None
                  ) -> Compacted:
    """Summarize ``request``'s prompt, made of ``items`` (prompt items, see
    :func:`prompt_items`), into a sealed compaction (a summary of at most
    ``max_tokens``)."""
    summary, counts = await summarize(engine, request, max_tokens)
    users = user_texts(items)
    return Compacted(seal_compaction(sealer, summary, users), counts, summary, tuple(users))


def triggered(items: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a request's input ends with a ``compaction_trigger``."""
    return bool(items) and items[-1].get("type") == TRIGGER


class FinishedStream:
    """The engine stream of a response that only compacts: it finishes at once, having
    written nothing (the compaction item is the whole output)."""

    def __init__(self) -> None:
        self._done = False

    def __aiter__(self) -> FinishedStream:
        return self

    async def __anext__(self) -> EngineDelta:
        await trio.lowlevel.checkpoint()
        if self._done:
            raise StopAsyncIteration
        self._done = True
        return EngineDelta(finish_reason="stop")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def compaction_item(ids: IdFactory, encrypted_content: str) -> dict[str, Any]:
    return {"id": item_id(ids, COMPACTION), "type": COMPACTION,
            "encrypted_content": encrypted_content}
