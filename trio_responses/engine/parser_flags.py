"""The vLLM flags this server reads itself: the chat template, the reasoning and tool parsers.

vLLM's server takes them on its command line, and so do we, among the pass-through engine
flags: four belong to vLLM's front end, not to its ``EngineArgs`` (``--chat-template
--tool-call-parser --enable-auto-tool-choice --tool-parser-plugin``), and three are
engine flags that the front end reads as well (``--reasoning-parser
--reasoning-parser-plugin --tokenizer``). :class:`ParserFlags` holds the seven.

They are declared once, by :func:`add_frontend_flags`. The vLLM engine adds them to
vLLM's own parser, which reads every engine flag with vLLM's spellings and config files
(``engine/vllm/args.py``); :func:`parse_parser_flags` reads them without vLLM (which takes
seconds to import and may be absent), for the scripted engine, ignoring every other flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

# The front end's flags: VLLMEngine.options, as vLLM's server keeps them.
FRONTEND_FLAGS = ("chat_template", "tool_call_parser", "enable_auto_tool_choice",
                  "tool_parser_plugin")
# Engine flags of vLLM's EngineArgs that choose parsers too.
ENGINE_PARSER_FLAGS = ("reasoning_parser", "reasoning_parser_plugin", "tokenizer")


@dataclass(frozen=True)
class ParserFlags:
    chat_template: str | None = None
    tool_call_parser: str | None = None
    enable_auto_tool_choice: bool = False
    tool_parser_plugin: str | None = None
    reasoning_parser: str | None = None
    reasoning_parser_plugin: str | None = None
    tokenizer: str | None = None

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> ParserFlags:
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})

    @property
    def auto_tool_parser(self) -> str | None:
        """The tool parser that reads the model's calls: as in vLLM, only with
        ``--enable-auto-tool-choice``."""
        return self.tool_call_parser if self.enable_auto_tool_choice else None

    def frontend_options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FRONTEND_FLAGS}


def add_frontend_flags(parser: Any) -> None:
    """Declare the front end's flags on ``parser`` (an argparse parser or group)."""
    parser.add_argument("--chat-template", default=None, help="a Jinja template or a file")
    parser.add_argument("--tool-call-parser", default=None)
    parser.add_argument("--enable-auto-tool-choice", action="store_true", default=False)
    parser.add_argument("--tool-parser-plugin", default=None)


def parse_parser_flags(vllm_args: Sequence[str]) -> ParserFlags:
    """The parser flags among vLLM engine flags, read without vLLM; others are ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    add_frontend_flags(parser)
    for name in ENGINE_PARSER_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), default=None)
    namespace, _ = parser.parse_known_args(list(vllm_args))
    return ParserFlags.from_namespace(namespace)
