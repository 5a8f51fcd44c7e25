"""Tool calls parsed by vLLM's own tool parser (``--tool-call-parser hermes
--enable-auto-tool-choice``; ``hermes`` works with the default model's tokenizer): the
parser stream, the vLLM bridge's engine thread over a fake engine core, and the server
through the strict SDK with the scripted engine writing Hermes-format calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.engine.fakes import FakeCore, core_writing
from tests.engine.test_bridge import deltas_of, request, started
from tests.support.events import as_dict, check_stream
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from tests.tools.test_function_tools import WAIT, WEATHER, Streamer, post_outputs
from trio_responses.__main__ import main
from trio_responses.engine.scripted import ScriptedEngine, model_tokens
from trio_responses.engine.tool_parsing import ToolCallParsers, ToolParserError
from trio_responses.engine.vllm.args import VLLMArgsError, parse_vllm_args

CHAT_TOOLS = ({"type": "function", "function": {k: v for k, v in WEATHER.items()
                                                if k != "type"}},)
CALL = {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
OUTPUT = f"Let me look. <tool_call>\n{json.dumps(CALL)}\n</tool_call>"


@pytest.fixture(scope="session")
def hermes(tokenizer: Any) -> ToolCallParsers:
    return ToolCallParsers("hermes", tokenizer)


@pytest.fixture(scope="module")
def engine(hermes: ToolCallParsers) -> ScriptedEngine:
    return ScriptedEngine(token_delay=0.002, model_name="scripted", tool_calls=hermes,
                          renders_tools=True)


@pytest.fixture(scope="module")
def parsing_server(engine: ScriptedEngine,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, engine) as server:
        yield server


@pytest.fixture
def client(parsing_server: ServerThread) -> Iterator[openai.OpenAI]:
    with strict_sdk(parsing_server) as sdk:
        yield sdk


# -- the parser stream ----------------------------------------------------------------


def test_hermes_stream_gives_text_then_a_call_in_pieces(hermes: ToolCallParsers) -> None:
    stream = hermes.stream(CHAT_TOOLS)
    pieces, ids = model_tokens(hermes.tokenizer, OUTPUT)
    text, calls = "", []
    for piece, token in zip(pieces, ids, strict=True):
        more_text, more_calls = stream.feed(piece, token)
        text, calls = text + more_text, calls + list(more_calls)
    more_text, more_calls = stream.finish()
    text, calls = text + more_text, calls + list(more_calls)
    assert text.strip() == "Let me look."
    assert [c.name for c in calls if c.name] == ["get_weather"] and calls[0].name
    assert {c.index for c in calls} == {0} and len(calls) > 3
    assert json.loads("".join(c.arguments for c in calls)) == CALL["arguments"]


def test_parser_that_cannot_use_the_tokenizer_fails_at_start(tokenizer: Any) -> None:
    with pytest.raises(ToolParserError, match="llama3_json cannot be used"):
        ToolCallParsers("llama3_json", tokenizer)


def test_unknown_parser_is_a_flag_error_before_the_model_loads() -> None:
    with pytest.raises(VLLMArgsError, match=r"unknown --tool-call-parser 'nope'.*hermes"):
        parse_vllm_args("/nonexistent/model", ["--tool-call-parser", "nope"])


def test_cli_refuses_an_unknown_parser(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--engine", "scripted", "--tool-call-parser", "nope", "--enable-auto-tool-choice"]
    assert main(argv) == 2
    assert "unknown --tool-call-parser 'nope'" in capsys.readouterr().err


# -- the vLLM bridge's engine thread --------------------------------------------------


async def test_bridge_says_whether_it_parses_tool_calls(hermes: ToolCallParsers) -> None:
    async with started(FakeCore(), tool_calls=hermes) as parsing, \
            started(FakeCore()) as plain:
        assert parsing.parses_tool_calls and not plain.parses_tool_calls
        # The fake template ignores tools: the built-in instructions will teach them.
        assert not parsing.renders_tools


async def test_bridge_parses_calls_on_the_engine_thread(hermes: ToolCallParsers) -> None:
    core = core_writing(hermes.tokenizer, OUTPUT)
    deltas, unparsed = await deltas_of(
        core, request(max_tokens=200, tools=CHAT_TOOLS, parse_tool_calls=True),
        request(max_tokens=200, tools=CHAT_TOOLS), tool_calls=hermes)
    calls = [call for delta in deltas for call in delta.tool_calls]
    assert "".join(d.text for d in deltas).strip() == "Let me look."
    assert [c.name for c in calls if c.name] == ["get_weather"]
    assert json.loads("".join(c.arguments for c in calls)) == CALL["arguments"]
    # A request that does not ask for parsing (tool_choice required/named) gets the text.
    assert "".join(d.text for d in unparsed) == OUTPUT
    assert not any(d.tool_calls for d in unparsed)


# -- the server, through the strict SDK ----------------------------------------------


def test_auto_calls_are_parsed_by_the_engine(client: openai.OpenAI,
                                             engine: ScriptedEngine) -> None:
    with client.responses.stream(model="scripted", input="[[call:get_weather]]",
                                 tools=[WEATHER]) as stream:  # type: ignore[list-item]
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.status == "completed" and call.call_id.startswith("call")
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and "".join(deltas) == call.arguments
    [done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert done["arguments"] == call.arguments and done["name"] == "get_weather"
    assert json.loads(call.arguments) == {"city": "text", "days": 1}
    # The model's template got the tools; our built-in instructions were not added.
    sent = engine.requests[-1]
    assert sent.parse_tool_calls and sent.tools
    assert not any("<tools>" in str(m.get("content")) for m in sent.messages)


def test_template_without_tools_gets_the_builtin_instructions(
        client: openai.OpenAI, engine: ScriptedEngine) -> None:
    # The hermes parser reads the built-in format, so a model whose template cannot
    # list tools is taught it, as with our own parser.
    engine.renders_tools = False
    try:
        response = client.responses.create(model="scripted", input="[[call:get_weather]]",
                                           tools=[WEATHER])  # type: ignore[list-item]
    finally:
        engine.renders_tools = True
    assert [item.type for item in response.output] == ["function_call"]
    sent = engine.requests[-1]
    assert sent.parse_tool_calls
    assert "<tools>" in str(sent.messages[0]["content"])


def test_namespaced_and_custom_calls_through_the_engine_parser(client: openai.OpenAI) -> None:
    """vLLM's hermes parser reads the names the model was offered (``agents__spawn``);
    the calls come back under the tools' own names, a custom tool's as a whole
    custom_tool_call item."""
    agents = {"type": "namespace", "name": "agents", "description": "Sub-agents.",
              "tools": [{"type": "function", "name": "spawn", "parameters": {
                  "type": "object", "properties": {"task": {"type": "string"}}}}]}
    patch = {"type": "custom", "name": "apply_patch"}
    with client.responses.stream(
            model="scripted", tools=[agents, patch],  # type: ignore[list-item]
            input='[[call:agents__spawn {"task": "a"}]] [[call:apply_patch {"input": "+x"}]]'
    ) as stream:
        events = [as_dict(event) for event in stream]
    check_stream(events)
    spawn, edit = events[-1]["response"]["output"]
    assert (spawn["type"], spawn["name"], spawn["namespace"]) == ("function_call", "spawn",
                                                                  "agents")
    assert json.loads(spawn["arguments"]) == {"task": "a"}
    assert (edit["type"], edit["name"], edit["input"]) == ("custom_tool_call", "apply_patch",
                                                           "+x")


def test_text_without_a_call_stays_text(client: openai.OpenAI) -> None:
    response = client.responses.create(model="scripted", input="just talk",
                                       tools=[WEATHER])  # type: ignore[list-item]
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == "You said: just talk"


def test_forced_calls_still_use_structured_output(client: openai.OpenAI,
                                                  engine: ScriptedEngine) -> None:
    response = client.responses.create(model="scripted", input="anything",
                                       tools=[WEATHER],  # type: ignore[list-item]
                                       tool_choice="required")
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert set(json.loads(call.arguments)) == {"city", "days"}
    assert not engine.requests[-1].parse_tool_calls


@pytest.mark.parametrize(("limits", "expected"), [
    ({}, 2), ({"parallel_tool_calls": False}, 1), ({"max_tool_calls": 1}, 1)])
def test_call_limits_apply_to_engine_calls(client: openai.OpenAI, limits: dict[str, Any],
                                           expected: int) -> None:
    with client.responses.stream(model="scripted", tools=[WEATHER],  # type: ignore[list-item]
                                 input="[[call:get_weather]] [[call:get_weather]]",
                                 **limits) as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == expected == len({call.call_id for call in calls})
    # Nothing of the dropped calls, or of their markup, shows up as text.
    assert [item.type for item in final.output] == ["function_call"] * expected
    assert all(json.loads(call.arguments) == {"city": "text", "days": 1} for call in calls)


def test_tool_wait_continues_with_the_engine_parser(client: openai.OpenAI,
                                                    parsing_server: ServerThread,
                                                    engine: ScriptedEngine) -> None:
    streamer = Streamer(client, model="scripted", input="[[call:get_weather]]",
                        tools=[WEATHER], extra_headers=WAIT)
    added = streamer.first("response.function_call_arguments.done")
    call_id = streamer.first("response.output_item.done")["item"]["call_id"]
    with httpx.Client(base_url=parsing_server.base_url, timeout=10) as http:
        created = streamer.first("response.created")["response"]["id"]
        assert post_outputs(http, created, (call_id, "sunny")).status_code == 200
    events = streamer.join()
    check_stream(events)
    assert added["name"] == "get_weather"
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [item["type"] for item in final["output"]] == ["function_call",
                                                          "function_call_output", "message"]
    assert final["output"][-1]["content"][0]["text"] == "The tool returned: sunny"
    assert engine.requests[-1].parse_tool_calls
