"""Function tools for models without a tool-calling template of their own.

The built-in format is the Hermes one, which most small chat models have seen: the
system prompt lists the tools inside ``<tools>…</tools>`` and asks for each call as

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

:class:`ToolCallParser` reads model text as it streams and splits it into plain text
and complete calls. Text that might be the start of a ``<tool_call>`` tag is held back
until it is known not to be; a call is released when its closing tag arrives (or at
the end), and a call whose JSON does not parse is given back as text. In ``json`` mode
(``tool_choice`` ``required`` or a named function, where structured output forces the
whole reply to be one call object) the whole output is the call.

``call_schema`` builds that structured-output schema from the tools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def tool_instructions(tools: Sequence[Mapping[str, Any]]) -> str:
    """The system-prompt section that teaches the built-in format."""
    listing = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (
        "You can call functions. The available functions are listed here as JSON "
        f"schemas:\n<tools>\n{listing}\n</tools>\n"
        "To call a function, answer with nothing but one block per call:\n"
        f'{OPEN}\n{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}\n{CLOSE}'
        "\nWhen you do not need a function, answer normally."
    )


def call_schema(tools: Sequence[Mapping[str, Any]], name: str | None = None) -> dict[str, Any]:
    """A JSON schema whose instances are exactly the valid calls of ``tools`` (functions in
    the chat-completions form), or of the one named ``name``."""
    options = []
    for tool in tools:
        function = tool["function"]
        if name is not None and function["name"] != name:
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        options.append({
            "type": "object",
            "properties": {"name": {"const": function["name"]}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    return options[0] if len(options) == 1 else {"anyOf": options}


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text


Piece = str | ParsedCall


def parse_call(text: str) -> ParsedCall | None:
    """A call in the built-in format, or None when ``text`` is not one (it is then
    given back as text) — also when it nests too deep to parse: the model's output is
    any text, and must not fail its response with a RecursionError."""
    try:
        value = json.loads(text)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return None
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):
            return ParsedCall(value["name"], arguments)
        return ParsedCall(value["name"], json.dumps(arguments, ensure_ascii=False))
    except (ValueError, RecursionError):
        return None


class ToolCallParser:
    def __init__(self, mode: Literal["tags", "json"] = "tags") -> None:
        self.mode = mode
        self._buffer = ""
        self._in_call = False

    @property
    def holding(self) -> bool:
        """Whether text is held back: a call (or what may be its opening) is unfinished."""
        return bool(self._buffer) or self._in_call

    def feed(self, text: str) -> list[Piece]:
        self._buffer += text
        if self.mode == "json":
            return []
        pieces: list[Piece] = []
        while True:
            if self._in_call:
                end = self._buffer.find(CLOSE)
                if end < 0:
                    return pieces
                body, self._buffer = self._buffer[:end], self._buffer[end + len(CLOSE):]
                self._in_call = False
                pieces.append(parse_call(body.strip()) or f"{OPEN}{body}{CLOSE}")
                continue
            start = self._buffer.find(OPEN)
            if start >= 0:
                if start:
                    pieces.append(self._buffer[:start])
                self._buffer = self._buffer[start + len(OPEN):]
                self._in_call = True
                continue
            keep = _partial_suffix(self._buffer, OPEN)
            cut = len(self._buffer) - keep
            if cut:
                pieces.append(self._buffer[:cut])
                self._buffer = self._buffer[cut:]
            return pieces

    def flush(self) -> list[Piece]:
        """The end of the output: release what was held back."""
        rest, self._buffer = self._buffer, ""
        if self.mode == "json" or self._in_call:
            call = parse_call(rest.strip())
            if call is not None:
                return [call]
            return [OPEN + rest if self._in_call else rest] if rest else []
        return [rest] if rest else []


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
