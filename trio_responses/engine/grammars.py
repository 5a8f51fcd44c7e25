"""Grammars for structured output (a forced custom tool's Lark or regex ``format``), with
xgrammar, the library vLLM's default structured-output backend compiles them with.

- :func:`check_grammar` compiles one, so that a bad grammar is a 400 at the request, not
  an engine failure in the middle of a stream;
- :func:`vllm_grammar` is what vLLM's ``StructuredOutputsParams(grammar=...)`` gets for a
  Lark grammar: xgrammar's own EBNF of it, so that vLLM compiles it as the syntax the
  request named instead of guessing the syntax from the text;
- :func:`matching_text` is constrained decoding without a model, for the scripted engine:
  it writes the text it is given for as long as the grammar allows, then the shortest way
  to an end the grammar accepts, one character at a time.

xgrammar comes with vLLM; it is imported lazily, and without it grammars are taken as
given (the scripted engine then writes its text unconstrained).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .base import Grammar

# Characters the scripted engine may write (its "vocabulary"), and its stop token.
_CHARS = (*(chr(code) for code in range(32, 127)), "\n", "\t")
_STOP = len(_CHARS)


class GrammarError(ValueError):
    """A grammar that does not compile."""


def _xgrammar() -> Any | None:
    try:
        import xgrammar
    except ImportError:  # pragma: no cover - xgrammar comes with vLLM
        return None
    return xgrammar


def check_grammar(grammar: Grammar) -> None:
    """Raise :class:`GrammarError` if ``grammar`` does not compile."""
    _compiled(grammar.syntax, grammar.definition)


def vllm_grammar(grammar: Grammar) -> str:
    """The grammar text vLLM's ``grammar`` option gets for a Lark grammar (EBNF)."""
    xgr = _xgrammar()
    if xgr is None:
        return grammar.definition
    try:
        return str(xgr.Grammar.from_lark(grammar.definition))
    except Exception as exc:  # xgrammar raises RuntimeError, ValueError, ...
        raise GrammarError(_message(exc)) from exc


@lru_cache(maxsize=64)
def _compiled(syntax: str, definition: str) -> Any | None:
    xgr = _xgrammar()
    if xgr is None:
        return None
    compiler = _compiler()
    try:
        if syntax == "regex":
            return compiler.compile_regex(definition)
        return compiler.compile_lark(definition)
    except Exception as exc:  # xgrammar raises RuntimeError, ValueError, ...
        raise GrammarError(_message(exc)) from exc


@lru_cache(maxsize=1)
def _compiler() -> Any:
    xgr = _xgrammar()
    assert xgr is not None
    info = xgr.TokenizerInfo([*_CHARS, "</s>"], vocab_type=xgr.VocabType.RAW,
                             stop_token_ids=[_STOP])
    return xgr.GrammarCompiler(info, cache_enabled=False)


def _message(exc: Exception) -> str:
    """xgrammar's message: its first line, without a C++ source location prefix
    (``[13:49:16] /project/cpp/regex_converter.cc:83: ...``)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if text.startswith("["):
        text = text.split(": ", 1)[-1]
    return text


def matching_text(grammar: Grammar, wanted: str, max_chars: int) -> str:
    """Text the grammar accepts: ``wanted`` for as long as the grammar allows it, then
    the first allowed character at each step until the grammar may end (at most
    ``max_chars`` characters)."""
    compiled = _compiled(grammar.syntax, grammar.definition)
    if compiled is None:
        return wanted
    xgr = _xgrammar()
    assert xgr is not None
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, _STOP + 1)
    out: list[str] = []
    following = True  # still writing ``wanted``
    while len(out) < max_chars and not matcher.is_terminated():
        matcher.fill_next_token_bitmask(bitmask)
        row = bitmask[0].tolist()
        allowed = [token for token in range(_STOP + 1)
                   if (row[token // 32] >> (token % 32)) & 1]
        if not allowed:
            break
        following = following and len(out) < len(wanted)
        want = _CHARS.index(wanted[len(out)]) if following and wanted[len(out)] in _CHARS \
            else None
        if want is not None and want in allowed:
            token = want
        elif _STOP in allowed:
            break
        else:
            following = False
            token = allowed[0]
        if not matcher.accept_token(token):  # pragma: no cover - it was allowed
            break
        out.append(_CHARS[token])
    return "".join(out)
