"""A forced custom tool with a Lark grammar and one with a regex, on the real engine (vLLM
on the CPU, the default model), through the strict SDK: the input always matches, because
vLLM's structured output decodes under the grammar."""

from __future__ import annotations

import re
from collections.abc import Iterator

import lark
import openai
import pytest

from tests.engine.harness import EngineLoop
from tests.support.events import as_dict, check_stream
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread
from trio_responses import Settings

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"
CITY_LARK = ('start: "City: " CITY ", " COUNTRY\n'
             "CITY: /[A-Z][a-z]{1,15}/\nCOUNTRY: /[A-Z][a-z]{1,15}/\n")
ANSWER_REGEX = r"(yes|no): [0-9]{1,3}"


@pytest.fixture(scope="module")
def client(real_engine: EngineLoop) -> Iterator[openai.OpenAI]:
    settings = Settings(port=0, responses_ping_interval_seconds=0, shutdown_grace_seconds=5)
    with ServerThread(settings, engine=real_engine.proxy()) as server, \
            strict_sdk(server, api_key="unused", timeout=300) as sdk:
        yield sdk


def test_a_forced_lark_tool_input_parses(client: openai.OpenAI) -> None:
    tool = {"type": "custom", "name": "locate", "description": "Where a place is.",
            "format": {"type": "grammar", "syntax": "lark", "definition": CITY_LARK}}
    with client.responses.stream(model=MODEL, input="Where is the Eiffel Tower?",
                                 tools=[tool], tool_choice={"type": "custom", "name": "locate"},
                                 temperature=0, max_output_tokens=40) as stream:
        events = [as_dict(event) for event in stream]
    check_stream(events)
    [call] = events[-1]["response"]["output"]
    assert call["type"] == "custom_tool_call" and call["name"] == "locate"
    lark.Lark(CITY_LARK).parse(call["input"])
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == call["input"]


def test_a_forced_regex_tool_input_matches(client: openai.OpenAI) -> None:
    tool = {"type": "custom", "name": "vote", "description": "A yes or no vote and a count.",
            "format": {"type": "grammar", "syntax": "regex", "definition": ANSWER_REGEX}}
    for question in ("Is Paris in France? How many people live there?", "Say anything."):
        response = client.responses.create(model=MODEL, input=question, tools=[tool],
                                           tool_choice={"type": "custom", "name": "vote"},
                                           temperature=0, max_output_tokens=20)
        [call] = response.output
        assert call.type == "custom_tool_call"
        assert re.fullmatch(ANSWER_REGEX, call.input), call.input
