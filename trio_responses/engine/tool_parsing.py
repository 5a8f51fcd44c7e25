"""Tool calls parsed by vLLM's tool parsers (``--tool-call-parser``, vLLM's names).

With ``--tool-call-parser NAME --enable-auto-tool-choice`` a request with function tools
and ``tool_choice: auto`` is rendered with the model's own chat template (which lists
the tools in the model's format) and its output is parsed by vLLM's parser ``NAME``
(``hermes``, ``llama3_json``, ``mistral``, ...), as vLLM's own server does. Without them,
or for ``required`` / a named function (structured output makes the reply one JSON
call), the built-in format and parser of :mod:`trio_responses.protocol.toolcalls` apply.

:class:`ToolCallParsers` is built once per engine; :meth:`ToolCallParsers.stream` makes
one :class:`ToolCallStream` per model turn (vLLM's parsers keep streaming state). An
engine feeds each step's answer text and token ids to it and sends what comes back as
:class:`~trio_responses.engine.base.EngineDelta` ``text`` and ``tool_calls``. Like the
reasoning parsers, a stream and its tokenizer are used by one thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .base import ToolCallDelta

log = logging.getLogger(__name__)


class ToolParserError(ValueError):
    """An unknown parser name (the message lists vLLM's), or one that cannot work with
    this model's tokenizer."""


def tool_parser_class(name: str, plugin: str | None = None) -> Any:
    """vLLM's tool parser class for ``name`` (importing a ``plugin`` file first)."""
    from vllm.tool_parsers import ToolParserManager

    if plugin:
        ToolParserManager.import_tool_parser(plugin)
    try:
        return ToolParserManager.get_tool_parser(name)
    except KeyError:
        names = ", ".join(ToolParserManager.list_registered())
        raise ToolParserError(
            f"unknown --tool-call-parser {name!r}; vLLM's parsers are: {names}") from None


class ToolCallParsers:
    """Makes a :class:`ToolCallStream` per model turn; see the module docstring."""

    def __init__(self, name: str, tokenizer: Any, *, plugin: str | None = None) -> None:
        self.name = name
        self._class = tool_parser_class(name, plugin)
        self.tokenizer = tokenizer
        try:
            self._class(tokenizer)
        except Exception as exc:  # e.g. special tokens this vocabulary lacks
            raise ToolParserError(
                f"--tool-call-parser {name} cannot be used with this model's tokenizer: "
                f"{exc}") from exc

    @property
    def keep_special_tokens(self) -> bool:
        """Whether detokenization must keep special tokens for this parser (its call
        markers are special tokens in some vocabularies; vLLM's parsers say so)."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest.model_validate({
            "model": "-", "messages": [], "tool_choice": "auto",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})
        try:
            adjusted = self._class(self.tokenizer).adjust_request(request)
        except Exception:
            log.debug("adjust_request of %s failed", self.name, exc_info=True)
            return False
        return not getattr(adjusted, "skip_special_tokens", True)

    def stream(self, tools: Sequence[Mapping[str, Any]]) -> ToolCallStream:
        """A stream for one turn of a request with ``tools`` (chat-completions form)."""
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest.model_validate(
            {"model": "-", "messages": [], "tools": [dict(t) for t in tools],
             "tool_choice": "auto"})
        return ToolCallStream(self._class(self.tokenizer, request.tools), request)


class ToolCallStream:
    """One turn's answer text through one vLLM tool parser, chunk by chunk."""

    def __init__(self, parser: Any, request: Any) -> None:
        self._parser = parser
        self._request = request
        self._text = ""
        self._ids: list[int] = []

    def feed(self, text: str, token_ids: Sequence[int]) -> tuple[str, tuple[ToolCallDelta, ...]]:
        """New answer text and its token ids → (plain text, call fragments) to send."""
        if not text and not token_ids:
            return "", ()
        previous_text, previous_ids = self._text, list(self._ids)
        self._text += text
        self._ids.extend(token_ids)
        message = self._parser.extract_tool_calls_streaming(
            previous_text, self._text, text, previous_ids, list(self._ids), list(token_ids),
            self._request)
        return _split(message)

    def finish(self) -> tuple[str, tuple[ToolCallDelta, ...]]:
        """The end of the turn: arguments the parser parsed but had not streamed yet."""
        finish = getattr(self._parser, "finish_streaming", None)
        text, calls = _split(finish()) if callable(finish) else ("", ())
        if calls or not self._parser.prev_tool_call_arr:
            return text, calls
        rest = self._parser.get_remaining_unstreamed_args()
        if rest:
            index = len(self._parser.prev_tool_call_arr) - 1
            calls = (ToolCallDelta(index=index, arguments=rest),)
        return text, calls


def _split(message: Any) -> tuple[str, tuple[ToolCallDelta, ...]]:
    if message is None:
        return "", ()
    calls = []
    for call in message.tool_calls or ():
        function = call.function
        if isinstance(function, Mapping):
            name, arguments = function.get("name"), function.get("arguments")
        else:
            name = getattr(function, "name", None)
            arguments = getattr(function, "arguments", None)
        calls.append(ToolCallDelta(index=call.index, name=name or None,
                                   arguments=arguments or ""))
    return message.content or "", tuple(calls)
