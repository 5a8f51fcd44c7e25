"""Prompts and sampling for the vLLM bridge: chat template → token ids, options → params.

:class:`PromptRenderer` renders an :class:`EngineRequest`'s chat messages with the
model's chat template (or ``--chat-template``) into prompt token ids, applies the context
limit, and clips ``max_tokens`` so that prompt + output fit in ``max_model_len``:

- a prompt of ``max_model_len`` tokens or more raises ``ContextLengthExceeded``
  (param ``input``); with ``request.truncate`` the oldest non-system messages are dropped
  first (never the last user message nor what follows it; ``engine/truncation.py``),
  found by bisection, so a long history costs O(log n) renders;
- ``max_tokens`` is clipped to the room left (at least one token, since the prompt is
  shorter than the limit), never refused: a clipped request ends with ``length``, which
  the runtime reports as ``incomplete`` / ``max_output_tokens``.

The renderer's tokenizer is its own copy, not the engine's: a Hugging Face tokenizer used
from two threads at once can raise "Already borrowed". The bridge calls the renderer
from one worker thread at a time.

:func:`sampling_params` maps :class:`SamplingOptions` to vLLM's ``SamplingParams`` (DELTA
outputs, structured outputs without free whitespace), and :func:`convert_logprobs` maps
vLLM's per-position logprob dicts to :class:`TokenLogprob` records. vLLM is imported
inside the functions that need it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trio_responses import errors
from trio_responses.engine.base import (
    EngineRequest,
    FinishReason,
    SamplingOptions,
    TokenLogprob,
    TopLogprob,
)
from trio_responses.engine.grammars import GrammarError, vllm_grammar
from trio_responses.engine.truncation import drop_oldest, droppable_indices

# Content part types whose text goes into the prompt.
_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "refusal"})
# Model defaults (generation_config.json) applied when a request leaves a field unset.
_DEFAULTED = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
)


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the renderer uses."""

    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    token_ids: list[int]
    max_tokens: int
    # How many messages truncation dropped (0 without truncation).
    dropped_messages: int = 0


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: string content, ``developer`` as system.

    Most templates concatenate ``message['content']`` as a string, so text parts are
    joined, and a missing content (an assistant turn with only tool calls) becomes "".
    """
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        item = dict(message)
        if item.get("role") == "developer":
            item["role"] = "system"
        content = item.get("content")
        if content is None:
            item["content"] = ""
        elif not isinstance(content, str):
            item["content"] = _join_text_parts(content, index)
        out.append(item)
    return out


def _join_text_parts(content: Any, index: int) -> str:
    if not isinstance(content, Sequence):
        raise errors.InvalidRequest(
            f"message {index}: content must be a string or a list of parts",
            param="input",
        )
    texts: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in _TEXT_PARTS:
            raise errors.InvalidRequest(
                f"message {index}: content of type {kind!r} is not supported by this model",
                param="input",
            )
        texts.append(str(part.get("text", part.get("refusal", ""))))
    return "".join(texts)


class PromptRenderer:
    def __init__(
        self,
        tokenizer: ChatTokenizer,
        *,
        max_model_len: int,
        chat_template: str | None = None,
    ) -> None:
        if chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ValueError("the model's tokenizer has no chat template; pass --chat-template")
        self._tokenizer = tokenizer
        self._chat_template = chat_template
        self.max_model_len = max_model_len

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] = (),
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """The prompt token ids of ``messages``, ending with the assistant's turn."""
        kwargs: dict[str, Any] = {**(template_kwargs or {}), "add_generation_prompt": True,
                                  "tokenize": False}
        if tools:
            kwargs["tools"] = [dict(tool) for tool in tools]
        if self._chat_template is not None:
            kwargs["chat_template"] = self._chat_template
        try:
            text = self._tokenizer.apply_chat_template(template_messages(messages), **kwargs)
        except errors.APIError:
            raise
        except Exception as exc:  # jinja2 raises anything a template author wrote
            raise errors.InvalidRequest(
                f"the chat template cannot render this input: {exc}", param="input"
            ) from exc
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template returned {type(text).__name__}, not str")
        # The template already wrote the special tokens (BOS and role markers).
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    @functools.cached_property
    def template_lists_tools(self) -> bool:
        """Whether the chat template writes the tools it is given into the prompt (a
        template without tool support ignores them)."""
        probe = [{"role": "user", "content": "hello"}]
        tool = {"type": "function", "function": {
            "name": "probe_tool_7f3a", "description": "probe", "parameters": {
                "type": "object", "properties": {}}}}
        try:
            return self.render(probe, [tool]) != self.render(probe)
        except errors.APIError:
            return False

    def count(self, request: EngineRequest) -> int:
        """The prompt length as submit would send it (after truncation, when it fits)."""
        if request.truncate:
            try:
                return len(self.prepare(request).token_ids)
            except errors.ContextLengthExceeded:
                pass
        return len(self.render(request.messages, request.tools, _template_kwargs(request)))

    def prepare(self, request: EngineRequest) -> PreparedPrompt:
        messages = list(request.messages)
        ids = self.render(messages, request.tools, _template_kwargs(request))
        dropped = 0
        if not self._fits(ids) and request.truncate:
            ids, dropped = self._truncate(messages, request, len(ids))
        if not self._fits(ids):
            raise errors.ContextLengthExceeded(
                f"the input is {len(ids)} tokens; this model's context is "
                f"{self.max_model_len} tokens, and the output needs at least one",
                param="input",
            )
        room = self.max_model_len - len(ids)
        return PreparedPrompt(ids, max(1, min(request.sampling.max_tokens, room)), dropped)

    def _fits(self, ids: Sequence[int]) -> bool:
        return len(ids) < self.max_model_len

    def _truncate(
        self,
        messages: list[Mapping[str, Any]],
        request: EngineRequest,
        full_length: int,
    ) -> tuple[list[int], int]:
        if not droppable_indices(messages):
            raise errors.ContextLengthExceeded(
                f"the input is {full_length} tokens, over this model's context of "
                f"{self.max_model_len}, and nothing before the last user message can be "
                "dropped",
                param="input",
            )
        fitted = drop_oldest(messages, lambda kept: self.render(
            kept, request.tools, _template_kwargs(request)), self._fits)
        if fitted is None:
            raise errors.ContextLengthExceeded(
                f"the input is {full_length} tokens; even without its history it does not "
                f"fit this model's context of {self.max_model_len} tokens",
                param="input",
            )
        return fitted


def _template_kwargs(request: EngineRequest) -> Mapping[str, Any]:
    from trio_responses.engine.reasoning import template_kwargs

    return template_kwargs(request.reasoning_effort)


def model_sampling_defaults(defaults: Mapping[str, Any]) -> dict[str, float]:
    """Of the model's generation-config values (vLLM's ``get_diff_sampling_param``),
    those a request that leaves them unset gets: what :func:`sampling_params` applies,
    and ``max_tokens`` (the config's ``max_new_tokens``, which vLLM renames): the
    runtime's default output limit, as vLLM's server uses it."""
    values = {key: float(value) for key, value in defaults.items()
              if key in _DEFAULTED and value is not None}
    if defaults.get("max_tokens"):
        values["max_tokens"] = float(defaults["max_tokens"])
    return values


def sampling_params(options: SamplingOptions, max_tokens: int, defaults: Mapping[str, Any],
                    *, keep_special_tokens: bool = False) -> Any:
    """vLLM ``SamplingParams`` for one request; raises InvalidRequest on bad values.
    ``keep_special_tokens``: a reasoning parser needs its markers in the text."""
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    fields: dict[str, Any] = {k: v for k, v in defaults.items() if k in _DEFAULTED}
    explicit = {
        "temperature": options.temperature,
        "top_p": options.top_p,
        "top_k": options.top_k,
        "min_p": options.min_p,
        "repetition_penalty": options.repetition_penalty,
    }
    fields.update({k: v for k, v in explicit.items() if v is not None})
    structured = None
    if options.json_schema is not None:
        # Without disable_any_whitespace a small model pads JSON with blank lines until
        # it runs out of tokens.
        structured = StructuredOutputsParams(
            json=dict(options.json_schema), disable_any_whitespace=True
        )
    elif options.json_object:
        structured = StructuredOutputsParams(json_object=True, disable_any_whitespace=True)
    elif options.grammar is not None and options.grammar.syntax == "regex":
        structured = StructuredOutputsParams(regex=options.grammar.definition)
    elif options.grammar is not None:
        try:
            structured = StructuredOutputsParams(grammar=vllm_grammar(options.grammar))
        except GrammarError as exc:
            raise errors.InvalidRequest(f"Invalid grammar: {exc}") from exc
    try:
        return SamplingParams(
            n=1,
            max_tokens=max_tokens,
            seed=options.seed,
            stop=list(options.stop) or None,
            ignore_eos=options.ignore_eos,
            logprobs=options.top_logprobs,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
            skip_special_tokens=not keep_special_tokens,
            **fields,
        )
    except (ValueError, VLLMValidationError) as exc:
        param = getattr(exc, "parameter", None)
        raise errors.InvalidRequest(f"invalid sampling parameters: {exc}", param=param) from exc


def convert_logprobs(
    token_ids: Sequence[int], positions: Sequence[Any] | None, top_n: int
) -> tuple[TokenLogprob, ...]:
    """One :class:`TokenLogprob` per new token from vLLM's ``{token_id: Logprob}`` dicts.

    vLLM puts the sampled token and the ``top_n`` best (by rank) in each dict; the sampled
    one may or may not be among the best.
    """
    if not positions:
        return ()
    out: list[TokenLogprob] = []
    for token_id, position in zip(token_ids, positions, strict=False):
        if not position:
            continue
        chosen = position.get(token_id)
        if chosen is None:
            continue
        top: tuple[TopLogprob, ...] = ()
        if top_n > 0:
            ranked = sorted(
                (entry for entry in position.values() if entry.rank is not None),
                key=lambda entry: entry.rank,
            )
            top = tuple(_top(entry) for entry in ranked[:top_n])
        token = chosen.decoded_token or ""
        out.append(
            TokenLogprob(
                token=token,
                logprob=_finite(chosen.logprob),
                bytes=tuple(token.encode("utf-8")),
                top=top,
            )
        )
    return tuple(out)


def _top(entry: Any) -> TopLogprob:
    token = entry.decoded_token or ""
    return TopLogprob(token=token, logprob=_finite(entry.logprob), bytes=tuple(token.encode()))


def _finite(value: float) -> float:
    # -inf (a token ruled out by structured output) is not valid JSON; OpenAI uses -9999.
    return max(float(value), -9999.0)


def finish_reason(reason: str | None) -> FinishReason | None:
    """vLLM's finish reason as ours; ``abort`` and ``error`` are failures, not reasons."""
    if reason is None:
        return None
    if reason == "length":
        return "length"
    if reason in ("stop", "repetition"):
        return "stop"
    raise ValueError(reason)
