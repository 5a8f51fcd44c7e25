"""The parser flags (chat template, reasoning and tool parsers) read the same way by both
engines: by vLLM's parser for the vLLM engine, without vLLM for the scripted one."""

from __future__ import annotations

from trio_responses.engine.parser_flags import ParserFlags, parse_parser_flags
from trio_responses.engine.vllm.args import make_parser

FLAGS = ["--dtype", "bfloat16", "--reasoning-parser", "qwen3", "--tool-call-parser", "hermes",
         "--enable-auto-tool-choice", "--tokenizer", "/t", "--chat-template", "{{ x }}",
         "--max-model-len", "512", "--tool-parser-plugin", "/p.py",
         "--reasoning-parser-plugin", "/r.py"]


def test_both_engines_read_the_same_flags() -> None:
    read = parse_parser_flags(FLAGS)
    assert read == ParserFlags(chat_template="{{ x }}", tool_call_parser="hermes",
                               enable_auto_tool_choice=True, tool_parser_plugin="/p.py",
                               reasoning_parser="qwen3", reasoning_parser_plugin="/r.py",
                               tokenizer="/t")
    assert ParserFlags.from_namespace(make_parser().parse_args(FLAGS)) == read
    assert read.auto_tool_parser == "hermes"
    assert read.frontend_options() == {"chat_template": "{{ x }}", "tool_call_parser": "hermes",
                                       "enable_auto_tool_choice": True,
                                       "tool_parser_plugin": "/p.py"}


def test_a_tool_parser_reads_calls_only_with_auto_tool_choice() -> None:
    assert parse_parser_flags(["--tool-call-parser", "hermes"]).auto_tool_parser is None
    assert parse_parser_flags([]) == ParserFlags()
