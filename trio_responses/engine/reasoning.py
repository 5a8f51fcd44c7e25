"""Reasoning split from the answer by vLLM's reasoning parsers (``--reasoning-parser``).

:class:`ReasoningParsers` is built once per engine from a parser name (vLLM's names:
``qwen3``, ``deepseek_r1``, ...) and a tokenizer; :meth:`ReasoningParsers.splitter`
makes one :class:`ReasoningSplitter` per model turn, because vLLM's parsers keep
streaming state. An engine feeds each step's new text and token ids to the splitter and
puts what comes back in :class:`~trio_responses.engine.base.EngineDelta`'s ``reasoning``
and ``text``, with the count in ``reasoning_tokens``.

A splitter is used by one thread only (the vLLM bridge's engine thread, or the Trio
thread for the scripted engine); the tokenizer given must not be used elsewhere at the
same time (Hugging Face tokenizers are not safe across threads).

Reasoning tokens: while a turn runs, the tokens of every fed chunk that gave reasoning
and no answer text are counted (a chunk is one engine step, usually one token); at the
end of the turn the parser's own count replaces that estimate when the parser keeps one
(vLLM's grammar-based parsers do, and exclude the ``<think>`` markup).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)


class ReasoningParserError(ValueError):
    """An unknown parser name (the message lists vLLM's), or a parser that cannot work
    with this model's tokenizer."""


def parser_class(name: str, plugin: str | None = None) -> Any:
    """vLLM's reasoning parser class for ``name`` (importing a ``plugin`` file first)."""
    from vllm.reasoning import ReasoningParserManager

    if plugin:
        ReasoningParserManager.import_reasoning_parser(plugin)
    try:
        return ReasoningParserManager.get_reasoning_parser(name)
    except KeyError:
        names = ", ".join(ReasoningParserManager.list_registered())
        raise ReasoningParserError(
            f"unknown --reasoning-parser {name!r}; vLLM's parsers are: {names}") from None


class ReasoningParsers:
    """Makes a :class:`ReasoningSplitter` per model turn; see the module docstring."""

    def __init__(self, name: str, tokenizer: Any, *, plugin: str | None = None) -> None:
        self.name = name
        self._class = parser_class(name, plugin)
        self.tokenizer = tokenizer
        # Built once so a parser that cannot work with this tokenizer (deepseek_r1 with a
        # vocabulary that lacks its think tokens) fails at start-up, not per request.
        try:
            self._probe = self._class(tokenizer)
        except Exception as exc:
            raise ReasoningParserError(
                f"--reasoning-parser {name} cannot be used with this model's tokenizer: "
                f"{exc}") from exc

    @property
    def keep_special_tokens(self) -> bool:
        """Whether detokenization must keep special tokens (the parser's markers may be
        special tokens; vLLM's parsers say so by clearing ``skip_special_tokens``)."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest.model_validate({"model": "-", "messages": []})
        try:
            adjusted = self._probe.adjust_request(request)
        except Exception:  # a parser whose adjust_request wants more of the request
            log.debug("adjust_request of %s failed", self.name, exc_info=True)
            return False
        return not getattr(adjusted, "skip_special_tokens", True)

    def splitter(self, *, thinking: bool | None = None,
                 prompt_token_ids: Sequence[int] = ()) -> ReasoningSplitter:
        """A splitter for one turn. ``thinking``: the request's ``enable_thinking``
        (False when it asked for reasoning effort ``none``), None when it did not say."""
        kwargs: dict[str, Any] = {}
        if thinking is not None:
            kwargs["chat_template_kwargs"] = {"enable_thinking": thinking}
        parser = self._class(self.tokenizer, **kwargs)
        ended = False
        if prompt_token_ids:
            # As vLLM: a prompt that already closed the reasoning (a template that
            # turned thinking off) leaves only the answer to come.
            ended = bool(parser.is_reasoning_end(list(prompt_token_ids)))
            if not ended:
                parser.adjust_initial_state_from_prompt(list(prompt_token_ids))
        return ReasoningSplitter(parser, ended=ended)


class ReasoningSplitter:
    """One turn's output through one vLLM reasoning parser, chunk by chunk.

    As vLLM's own streaming (``vllm.parser.abstract_parser``): the parser sees the
    output until it says the reasoning ended; after that step, text and ids pass through
    untouched, for the tool parser. At that step only the step's answer token ids go on,
    and the answer text is what the parser held back too: a grammar-based parser
    (``engine_based_streaming``) is flushed; for an older one, which has no flush and may
    hold the answer's start back, the text after its end marker is taken from the
    output itself.
    """

    def __init__(self, parser: Any, *, ended: bool = False) -> None:
        self._parser = parser
        self._engine_based = bool(getattr(parser, "engine_based_streaming", False))
        self._text = ""
        self._ids: list[int] = []
        self._estimate = 0
        self.ended = ended
        # No reasoning to split any more: the prompt ended it, or a grammar-based parser
        # said it ended.
        self._passthrough = ended
        self.reasoning_tokens = 0

    def feed(self, text: str, token_ids: Sequence[int]
             ) -> tuple[str, str, Sequence[int]]:
        """New output (text and its token ids) → (reasoning, answer text, the answer's
        token ids) to send."""
        self._ids.extend(token_ids)
        if self._passthrough:
            return "", text, token_ids
        if not text and not token_ids:
            return "", "", ()
        previous_text, previous_ids = self._text, self._ids[:len(self._ids) - len(token_ids)]
        self._text += text
        parser = self._parser
        reasoning, content = _parts(parser.extract_reasoning_streaming(
            previous_text, self._text, text, previous_ids, list(self._ids), list(token_ids)))
        if reasoning and not content:
            self._estimate += len(token_ids)
        self.reasoning_tokens = self._estimate
        if self._engine_based:
            ended = parser.has_engine_confirmed_reasoning_end()
        else:
            ended = parser.is_reasoning_end_streaming(list(self._ids), list(token_ids))
        if not ended:
            return reasoning, content, ()
        self.ended = self._passthrough = True
        if self._engine_based:
            more_reasoning, more_content = _parts(parser.finish_streaming())
            reasoning, content = reasoning + more_reasoning, content + more_content
        else:
            content = self._answer_start(len(previous_text)) or content
        return reasoning, content, parser.extract_content_ids(list(token_ids))

    def _answer_start(self, step_start: int) -> str | None:
        """The text after the parser's end marker, when the marker ends in this step."""
        marker = self._parser.reasoning_end_str
        at = self._text.rfind(marker) if marker else -1
        if at < 0 or at + len(marker) <= step_start:
            return None
        return self._text[at + len(marker):]

    def finish(self) -> tuple[str, str]:
        """The end of the turn: what the parser still held back (only while reasoning:
        after it, flushing would leak its view of the answer's markup), and the final
        count."""
        reasoning = content = ""
        finish = getattr(self._parser, "finish_streaming", None)
        if not self.ended and self._engine_based and callable(finish):
            reasoning, content = _parts(finish())
        counted = self._parser.count_reasoning_tokens(self._ids)
        if counted > 0:
            self.reasoning_tokens = min(counted, len(self._ids))
        return reasoning, content


def _parts(message: Any) -> tuple[str, str]:
    if message is None:
        return "", ""
    return message.reasoning or "", message.content or ""


def thinking_flag(reasoning_effort: str | None) -> bool | None:
    """``enable_thinking`` for a request's reasoning effort, as vLLM derives it."""
    return None if reasoning_effort is None else reasoning_effort != "none"


def template_kwargs(reasoning_effort: str | None) -> Mapping[str, Any]:
    """Extra chat-template variables for a request's reasoning effort (templates that
    do not use them ignore them), as vLLM's Responses server passes them."""
    if reasoning_effort is None:
        return {}
    return {"reasoning_effort": reasoning_effort,
            "enable_thinking": reasoning_effort != "none"}
