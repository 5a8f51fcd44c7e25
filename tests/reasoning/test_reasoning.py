"""Reasoning split from the answer by a real vLLM reasoning parser (``qwen3`` over the
default model's tokenizer): the splitter, the vLLM bridge's engine thread (over a fake
engine core that writes ``<think>`` text), and the whole server through the strict SDK
(the scripted engine writing a ``<think>`` block when the input says ``[[think]]``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from tests.engine.fakes import FakeCore, core_writing
from tests.engine.test_bridge import deltas_of, request, settle, started
from tests.support.events import as_dict, check_stream
from tests.support.server import ServerThread
from trio_responses import errors
from trio_responses.__main__ import main
from trio_responses.engine.reasoning import ReasoningParserError, ReasoningParsers
from trio_responses.engine.scripted import model_tokens
from trio_responses.engine.tool_parsing import ToolCallParsers
from trio_responses.engine.vllm.args import VLLMArgsError, parse_vllm_args

THOUGHT = "I should greet them. Let me think"
ANSWER = "Hello there!"
OUTPUT = f"<think>{THOUGHT}</think>{ANSWER}"
WEATHER = {"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def split(parsers: ReasoningParsers, text: str, *, chunk: int = 1,
          thinking: bool | None = None) -> tuple[str, str, int]:
    """``text`` through a splitter, ``chunk`` tokens per feed: (reasoning, answer, count)."""
    pieces, ids = model_tokens(parsers.tokenizer, text)
    splitter = parsers.splitter(thinking=thinking)
    reasoning, answer = "", ""
    for start in range(0, len(pieces), chunk):
        r, a, _ = splitter.feed("".join(pieces[start:start + chunk]),
                                [i for token in ids[start:start + chunk] for i in token])
        reasoning, answer = reasoning + r, answer + a
    r, a = splitter.finish()
    return reasoning + r, answer + a, splitter.reasoning_tokens


# -- the splitter --------------------------------------------------------------------


def test_tokens_rebuild_the_text(qwen3: ReasoningParsers) -> None:
    pieces, ids = model_tokens(qwen3.tokenizer, OUTPUT + " Grüße 👋")
    assert "".join(pieces) == OUTPUT + " Grüße 👋"
    assert len(pieces) == len(ids) > 10 and all(len(token) == 1 for token in ids)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_qwen3_splits_thinking_from_the_answer(qwen3: ReasoningParsers, tokenizer: Any,
                                               chunk: int) -> None:
    reasoning, answer, count = split(qwen3, OUTPUT, chunk=chunk)
    assert (reasoning, answer) == (THOUGHT, ANSWER)
    # The thought's tokens, not the <think> markup nor the answer.
    thought_tokens = len(tokenizer.encode(THOUGHT, add_special_tokens=False))
    assert count == thought_tokens


def test_thinking_off_leaves_everything_answer(qwen3: ReasoningParsers) -> None:
    assert split(qwen3, ANSWER, thinking=False) == ("", ANSWER, 0)


def test_qwen3_takes_output_without_think_markup_as_reasoning(qwen3: ReasoningParsers) -> None:
    # vLLM's qwen3 parser starts inside the reasoning (Qwen3's template opens it in the
    # prompt): a model that never closes it only reasons. Documented.
    reasoning, answer, count = split(qwen3, ANSWER)
    assert (reasoning, answer) == (ANSWER, "") and count > 0


@pytest.mark.parametrize(("name", "text"), [
    ("olmo3", f"<think>{THOUGHT}</think>{ANSWER}"),
    ("granite", f"Here is my thought process:{THOUGHT}Here is my response:{ANSWER}"),
])
@pytest.mark.parametrize("chunk", [1, 3])
def test_parsers_without_a_grammar_split_too(tokenizer: Any, name: str, text: str,
                                             chunk: int) -> None:
    # vLLM's older parsers have no finish_streaming and say where the reasoning ends
    # through is_reasoning_end_streaming.
    reasoning, answer, count = split(ReasoningParsers(name, tokenizer), text, chunk=chunk)
    assert (reasoning.strip(), answer.strip()) == (THOUGHT, ANSWER)
    assert count > 0


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_answer_markup_passes_untouched_after_the_reasoning(tokenizer: Any,
                                                            chunk: int) -> None:
    # After the reasoning the parser is out of the way, as in vLLM: an answer ending in
    # a '>' (which an older parser holds back as a possible marker and never flushes)
    # or quoting <think> stays whole.
    answer = "Use <b>bold</b> or <think> tags>"
    for name in ("olmo3", "qwen3"):
        parsers = ReasoningParsers(name, tokenizer)
        reasoning, text, _ = split(parsers, f"<think>{THOUGHT}</think>{answer}", chunk=chunk)
        assert (reasoning, text) == (THOUGHT, answer), name


def test_unknown_parser_names_vllms_parsers(tokenizer: Any) -> None:
    with pytest.raises(ReasoningParserError, match="qwen3"):
        ReasoningParsers("no-such-parser", tokenizer)


def test_parser_that_cannot_use_the_tokenizer_fails_at_start(tokenizer: Any) -> None:
    with pytest.raises(ReasoningParserError, match="deepseek_r1 cannot be used"):
        ReasoningParsers("deepseek_r1", tokenizer)


def test_unknown_parser_is_a_flag_error_before_the_model_loads() -> None:
    with pytest.raises(VLLMArgsError, match="unknown --reasoning-parser 'nope'"):
        parse_vllm_args("/nonexistent/model", ["--reasoning-parser", "nope"])


def test_cli_refuses_an_unknown_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--engine", "scripted", "--reasoning-parser", "nope"]) == 2
    assert "unknown --reasoning-parser 'nope'" in capsys.readouterr().err


# -- the vLLM bridge's engine thread --------------------------------------------------


async def test_bridge_splits_each_step_on_the_engine_thread(qwen3: ReasoningParsers,
                                                            tokenizer: Any) -> None:
    [deltas] = await deltas_of(core_writing(tokenizer, OUTPUT), request(max_tokens=100),
                               reasoning=qwen3)
    assert "".join(d.reasoning for d in deltas) == THOUGHT
    assert "".join(d.text for d in deltas) == ANSWER
    last = deltas[-1]
    assert (last.finish_reason, last.output_tokens) == ("stop", len(tokenizer.encode(OUTPUT)))
    assert last.reasoning_tokens == len(tokenizer.encode(THOUGHT, add_special_tokens=False))


async def test_bridge_passes_effort_none_as_thinking_off(qwen3: ReasoningParsers,
                                                         tokenizer: Any) -> None:
    [deltas] = await deltas_of(core_writing(tokenizer, ANSWER),
                               request(max_tokens=100, reasoning_effort="none"),
                               reasoning=qwen3)
    assert "".join(d.text for d in deltas) == ANSWER
    assert not any(d.reasoning for d in deltas) and deltas[-1].reasoning_tokens == 0


@pytest.mark.parametrize("per_step", [1, 3])
async def test_bridge_reasoning_then_a_parsed_call(qwen3: ReasoningParsers, tokenizer: Any,
                                                   per_step: int) -> None:
    # Both of vLLM's parsers at once, as vLLM chains them: the tool parser sees the
    # answer only, and several tokens per step change nothing.
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    output = f"<think>{THOUGHT}</think><tool_call>\n{json.dumps(call)}\n</tool_call>"
    tools = ({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}},)
    [deltas] = await deltas_of(
        core_writing(tokenizer, output, per_step=per_step),
        request(max_tokens=200, tools=tools, parse_tool_calls=True),
        reasoning=qwen3, tool_calls=ToolCallParsers("hermes", tokenizer))
    calls = [piece for delta in deltas for piece in delta.tool_calls]
    assert "".join(d.reasoning for d in deltas) == THOUGHT
    assert "".join(d.text for d in deltas).strip() == ""
    assert [piece.name for piece in calls if piece.name] == ["get_weather"]
    assert json.loads("".join(piece.arguments for piece in calls)) == call["arguments"]


class FailingParsers:
    """Reasoning parsers whose every request fails at its first step."""

    def splitter(self, **kwargs: Any) -> Any:
        return self

    def feed(self, text: str, token_ids: Any) -> Any:
        raise RuntimeError("parser bug")


async def test_a_parser_that_raises_fails_only_its_request() -> None:
    core = FakeCore()
    async with started(core, reasoning=FailingParsers()) as engine:
        stream = await engine.submit(request(max_tokens=50))
        with pytest.raises(errors.EngineError, match="parser bug"):
            [delta async for delta in stream]
        await settle(engine, core, lambda: core.aborted)
        assert engine.statistics().healthy
        assert len(core.aborted) == 1 and not core.has_unfinished_requests()


# -- the server, through the strict SDK ----------------------------------------------


def test_stream_has_a_reasoning_item_before_the_message(client: openai.OpenAI) -> None:
    with client.responses.stream(model="scripted", input="[[think]] hello there") as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    items = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert items == ["reasoning", "message"]
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert reasoning.summary == [] and reasoning.content is not None
    thought = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
    assert thought == reasoning.content[0].text == "The user wrote 2 words. I will answer."
    [done] = [e for e in events if e["type"] == "response.reasoning_text.done"]
    assert done["text"] == thought and done["item_id"] == reasoning.id
    assert final.output_text == "You said: hello there"
    assert "<think>" not in final.output_text
    usage = final.usage
    assert usage is not None
    assert 0 < usage.output_tokens_details.reasoning_tokens < usage.output_tokens


def test_create_and_retrieve_keep_the_reasoning(client: openai.OpenAI) -> None:
    created = client.responses.create(model="scripted", input="[[think]] what is up")
    assert [item.type for item in created.output] == ["reasoning", "message"]
    assert created.output_text == "You said: what is up"
    stored = client.responses.retrieve(created.id)
    assert stored.output == created.output and stored.usage == created.usage


def test_effort_none_turns_thinking_off(client: openai.OpenAI) -> None:
    response = client.responses.create(model="scripted", input="[[think]] hi",
                                       reasoning={"effort": "none"})
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == "You said: hi"
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.reasoning is not None and response.reasoning.effort == "none"


def test_summary_is_echoed_and_not_produced(client: openai.OpenAI) -> None:
    response = client.responses.create(model="scripted", input="[[think]] hi",
                                       reasoning={"effort": "high", "summary": "auto"})
    assert response.reasoning is not None and response.reasoning.summary == "auto"
    assert response.output[0].type == "reasoning" and response.output[0].summary == []


def test_reasoning_then_a_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model="scripted", tools=[WEATHER],  # type: ignore[list-item]
                                 input="[[think]] [[call:get_weather]]") as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    reasoning, call = final.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "text"}


def test_reasoning_items_in_input_and_chains(client: openai.OpenAI) -> None:
    first = client.responses.create(model="scripted", input="[[think]] first")
    # Through previous_response_id (its reasoning item is in the chain) ...
    second = client.responses.create(model="scripted", input="[[think]] second",
                                     previous_response_id=first.id)
    assert [item.type for item in second.output] == ["reasoning", "message"]
    assert second.output_text == "You said: second"
    # ... and replayed by the client as input items, as openai-agents does.
    replayed: list[Any] = [item.model_dump(exclude_none=True) for item in first.output]
    third = client.responses.create(
        model="scripted", input=[*replayed, {"role": "user", "content": "[[think]] third"}])
    assert third.output_text == "You said: third"
    listed = client.responses.input_items.list(third.id, order="asc")
    assert [item.type for item in listed.data][:2] == ["reasoning", "message"]


def test_background_replay_has_the_reasoning_events(client: openai.OpenAI,
                                                    thinking_server: ServerThread) -> None:
    created = client.responses.create(model="scripted", input="[[think]] later",
                                      background=True, store=True)
    with httpx.Client(base_url=thinking_server.base_url, timeout=30) as http, \
            connect_sse(http, "GET", f"/v1/responses/{created.id}",
                        params={"stream": "true"}) as source:
        events = [json.loads(sse.data) for sse in source.iter_sse() if sse.data != "[DONE]"]
    check_stream(events, replay=True)
    kinds = [e["type"] for e in events]
    assert "response.reasoning_text.delta" in kinds and kinds[-1] == "response.completed"
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["reasoning",
                                                                           "message"]
