"""openai-agents keeping its history in a server conversation, over several turns and a
tool call: its conversations-backed session (``OpenAIConversationsSession``: the items
API, the history sent as input), and a server-managed conversation
(``Runner.run(conversation_id=...)``: ``conversation`` on create). Asserted on what the
engine was given and on what the conversation holds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.server.helpers import MODEL, on_server
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from trio_responses.engine.scripted import ScriptedEngine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    engine = ScriptedEngine(token_delay=0.001, model_name=MODEL)
    with serve_scripted(tmp_path_factory, engine) as running:
        yield running


def last_prompt(server: ServerThread) -> list[tuple[str, str]]:
    engine = engine_of(server)
    messages = on_server(server, lambda: engine.requests[-1].messages)
    return [(m["role"], str(m["content"])) for m in messages]


def conversation_texts(server: ServerThread, conversation_id: str) -> list[tuple[str, str]]:
    """Each item's type and what it says: a message's text, a call's function name, an
    output's output."""
    with strict_sdk(server) as client:
        items = list(client.conversations.items.list(conversation_id, order="asc"))
    said = []
    for item in items:
        if item.type == "message":
            said.append((item.type, "".join(getattr(part, "text", "") for part in item.content)))
        elif item.type == "function_call":
            said.append((item.type, item.name))
        else:
            said.append((item.type, str(getattr(item, "output", ""))))
    return said


def run_agent(server: ServerThread, turns: list[str], **run_options: Any
              ) -> tuple[list[str], list[str]]:
    """Run ``turns`` one after another with one agent (a weather tool) on asyncio, as
    openai-agents runs; returns the final outputs and the tool's calls."""
    from agents import (
        Agent,
        OpenAIConversationsSession,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x",
                                      _strict_response_validation=True) as client:
            agent = Agent(name="helper", instructions="Be brief.", tools=[get_weather],
                          model=OpenAIResponsesModel(model=MODEL, openai_client=client))
            options = dict(run_options)
            if options.pop("session", False):
                options["session"] = OpenAIConversationsSession(
                    conversation_id=options.pop("conversation"), openai_client=client)
            elif "conversation" in options:
                options["conversation_id"] = options.pop("conversation")
            outputs = []
            for text in turns:
                result = await Runner.run(agent, text, **options)
                outputs.append(str(result.final_output))
            return outputs

    return asyncio.run(main()), calls


TURNS = ["My name is Ada.", "What is the weather? [[call:get_weather]]", "Thanks, bye."]


@pytest.mark.parametrize("mode", ["session", "server-managed"])
def test_an_agent_keeps_its_history_in_a_conversation(server: ServerThread, mode: str
                                                      ) -> None:
    with strict_sdk(server) as client:
        conversation = client.conversations.create().id
    outputs, calls = run_agent(server, TURNS, conversation=conversation,
                               session=mode == "session")
    assert outputs == ["You said: My name is Ada.", "The tool returned: sunny in text",
                       "You said: Thanks, bye."]
    assert calls == ["text"]
    # The last turn's prompt held every earlier turn, the tool call and its result.
    prompt = last_prompt(server)
    assert prompt[0][0] == "system" and prompt[0][1].startswith("Be brief.")
    spoken = [(role, text) for role, text in prompt if role in ("user", "assistant")
              and text]
    assert spoken == [
        ("user", "My name is Ada."), ("assistant", "You said: My name is Ada."),
        ("user", "What is the weather? [[call:get_weather]]"),
        ("assistant", "The tool returned: sunny in text"), ("user", "Thanks, bye.")]
    assert ("tool", "sunny in text") in prompt
    # And the conversation holds them, in order, each once.
    assert conversation_texts(server, conversation) == [
        ("message", "My name is Ada."), ("message", "You said: My name is Ada."),
        ("message", "What is the weather? [[call:get_weather]]"),
        ("function_call", "get_weather"), ("function_call_output", "sunny in text"),
        ("message", "The tool returned: sunny in text"),
        ("message", "Thanks, bye."), ("message", "You said: Thanks, bye.")]
