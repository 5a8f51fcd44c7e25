"""One turn's output through vLLM's parsers: reasoning first, then tool calls.

:class:`TurnParsing` chains a request's :class:`~trio_responses.engine.reasoning.ReasoningSplitter`
and :class:`~trio_responses.engine.tool_parsing.ToolCallStream` (either may be absent) the
way vLLM's server does: the tool parser sees only the answer, never the reasoning, and
only the answer's token ids. Engines feed it each step's text and token ids and put what
comes back in an :class:`~trio_responses.engine.base.EngineDelta`.

A parser that raises fails the one request it belongs to: :class:`ParsingFailed` carries
the message, and the engine ends that request (and only it) with an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import ToolCallDelta
from .reasoning import ReasoningSplitter
from .tool_parsing import ToolCallStream


class ParsingFailed(Exception):
    """A vLLM parser raised on this request's output."""


@dataclass(frozen=True, slots=True)
class ParsedStep:
    reasoning: str = ""
    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()


class TurnParsing:
    def __init__(self, reasoning: ReasoningSplitter | None,
                 tool_calls: ToolCallStream | None) -> None:
        self._reasoning = reasoning
        self._tool_calls = tool_calls

    @property
    def reasoning_tokens(self) -> int:
        return 0 if self._reasoning is None else self._reasoning.reasoning_tokens

    def feed(self, text: str, token_ids: Sequence[int], *, last: bool) -> ParsedStep:
        """One step's new output; ``last``: the request finished with it."""
        try:
            return self._feed(text, token_ids, last)
        except Exception as exc:
            raise ParsingFailed(f"the output parser failed: {type(exc).__name__}: {exc}"
                                ) from exc

    def _feed(self, text: str, token_ids: Sequence[int], last: bool) -> ParsedStep:
        reasoning, answer_ids = "", token_ids
        if self._reasoning is not None:
            reasoning, text, answer_ids = self._reasoning.feed(text, token_ids)
            if last:
                more_reasoning, more_text = self._reasoning.finish()
                reasoning, text = reasoning + more_reasoning, text + more_text
        calls: tuple[ToolCallDelta, ...] = ()
        if self._tool_calls is not None:
            if text or answer_ids:
                text, calls = self._tool_calls.feed(text, answer_ids)
            if last:
                more_text, more_calls = self._tool_calls.finish()
                text, calls = text + more_text, calls + more_calls
        return ParsedStep(reasoning, text, calls)
