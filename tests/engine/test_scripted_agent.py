"""The scripted engine's agent scripts: the calls of each model turn, then an answer
that reports the last tool output (what the Codex and openai-agents tests rely on)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from trio_responses.engine.base import EngineRequest, SamplingOptions
from trio_responses.engine.scripted import echo_reply, script_step, scripted_calls
from trio_responses.protocol.toolcalls import ParsedCall, ToolCallParser

EXEC = {"type": "function", "function": {"name": "exec_command", "parameters": {
    "type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}}
NOTE = {"type": "function", "function": {"name": "agents__note"}}


def request(*messages: Mapping[str, Any]) -> EngineRequest:
    return EngineRequest(request_id="r", messages=tuple(messages),
                         sampling=SamplingOptions(max_tokens=100), tools=(EXEC, NOTE))


def calls_in(reply: str) -> list[tuple[str, dict[str, Any]]]:
    parser = ToolCallParser()
    pieces = [*parser.feed(reply), *parser.flush()]
    return [(p.name, json.loads(p.arguments)) for p in pieces if isinstance(p, ParsedCall)]


def test_markers_with_and_without_arguments() -> None:
    text = ('[[call:exec_command {"cmd": "echo ]] [[x"}]] and [[call:agents__note]] '
            '[[call:exec_command [1]]] [[call:exec_command {"cmd": "unclosed"}')
    assert scripted_calls(text) == [("exec_command", {"cmd": "echo ]] [[x"}),
                                    ("agents__note", None)]


def test_a_script_plays_one_turn_per_model_turn_then_answers() -> None:
    script = ('[[call:exec_command {"cmd": "ls"}]] [[call:agents__note]] [[then]] '
              '[[call:exec_command {"cmd": "pwd"}]]')
    user = {"role": "user", "content": script}
    turn1 = request({"role": "system", "content": "be brief"}, user)
    assert calls_in(echo_reply(turn1)) == [("exec_command", {"cmd": "ls"}),
                                           ("agents__note", {})]
    called = {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}, {"id": "c2"}]}
    outputs = [{"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
               {"role": "tool", "tool_call_id": "c2", "content": "noted"}]
    turn2 = request(user, called, *outputs)
    assert calls_in(echo_reply(turn2)) == [("exec_command", {"cmd": "pwd"})]
    turn3 = request(user, called, *outputs,
                    {"role": "assistant", "content": "", "tool_calls": [{"id": "c3"}]},
                    {"role": "tool", "tool_call_id": "c3", "content": "/home"})
    assert script_step(turn3) == []
    assert echo_reply(turn3) == "The tool returned: /home"
    # A new user message starts the script again; a tool the request lacks is not called.
    again = request(user, called, *outputs, user)
    assert len(calls_in(echo_reply(again))) == 2
    assert echo_reply(request({"role": "user", "content": "[[call:rm_rf]]"})) == (
        "You said: [[call:rm_rf]]")
