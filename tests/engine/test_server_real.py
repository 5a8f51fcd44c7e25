"""The Responses API over the real engine (vLLM on the CPU, the default model), through
the official SDK in strict mode, against the app served by Hypercorn on loopback.

The server runs in its own Trio run and reaches the session's one engine through
``real_engine.proxy()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pydantic
import pytest

from tests.clients.codex_capture import FIRST_REQUEST, HEADERS
from tests.engine.harness import EngineLoop
from tests.support.events import as_dict, check_stream, joined_text
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, run_ended
from tests.support.waiting import wait_until
from trio_responses import Settings
from trio_responses.store import SQLiteStore

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"
# Several hundred tokens: the CPU's KV blocks hold 128 tokens, and only full blocks are
# cached.
LONG_PROMPT = " ".join(f"Fact {i}: the lighthouse keeper counted {i} gulls." for i in range(60))


@pytest.fixture(scope="module")
def server(
    real_engine: EngineLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    path: Path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    settings = Settings(port=0, responses_ping_interval_seconds=0, shutdown_grace_seconds=5)
    with ServerThread(settings, engine=real_engine.proxy(), store=SQLiteStore(path)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[openai.OpenAI]:
    with strict_sdk(server, api_key="unused", timeout=300) as sdk:
        yield sdk


def unfinished(real_engine: EngineLoop) -> int:
    return real_engine.engine.statistics().running


def test_capital_of_france(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="What is the capital of France?", temperature=0, max_output_tokens=30
    )
    assert response.status == "completed"
    assert "Paris" in response.output_text
    usage = response.usage
    assert usage is not None and usage.input_tokens > 5 and 0 < usage.output_tokens <= 30


def test_streamed_deltas_join_to_the_final_text(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Name three colours.", temperature=0, max_output_tokens=40
    ) as stream:
        events = [as_dict(event) for event in stream]
    check_stream(events)
    final = events[-1]["response"]
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    assert joined_text(events) == final["output"][0]["content"][0]["text"] != ""


class City(pydantic.BaseModel):
    name: str
    country: str


def test_json_schema_output_parses_and_validates(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model=MODEL,
        input="Give a city and its country as JSON.",
        text_format=City,
        temperature=0,
        max_output_tokens=60,
    )
    assert parsed.status == "completed"
    city = parsed.output_parsed
    assert isinstance(city, City) and city.name and city.country
    assert City.model_validate(json.loads(parsed.output_text)) == city


def test_max_output_tokens_gives_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Tell me a long story.", max_output_tokens=5, temperature=0
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 5


def test_logprobs(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input="Say hello.",
        temperature=0,
        max_output_tokens=8,
        top_logprobs=2,
        include=["message.output_text.logprobs"],
    )
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.type == "output_text" and part.logprobs
    assert all(len(lp.top_logprobs) == 2 for lp in part.logprobs)
    assert "".join(lp.token for lp in part.logprobs) == part.text


def test_disconnect_leaves_no_unfinished_request(
    server: ServerThread, real_engine: EngineLoop
) -> None:
    body = {
        "model": MODEL,
        "input": "Write a very long story.",
        "stream": True,
        "max_output_tokens": 1000,
        "ignore_eos": True,
    }
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        with http.stream("POST", "/v1/responses", json=body) as stream:
            deltas = 0
            for line in stream.iter_lines():
                deltas += '"response.output_text.delta"' in line
                if deltas >= 3:
                    break
    wait_until(lambda: unfinished(real_engine) == 0, timeout=30, interval=0.05)


def test_cancel_leaves_no_unfinished_request(
    client: openai.OpenAI, real_engine: EngineLoop, server: ServerThread
) -> None:
    response = client.responses.create(
        model=MODEL,
        input="Write a very long story.",
        background=True,
        store=True,
        max_output_tokens=1000,
        extra_body={"ignore_eos": True},
    )
    wait_until(
        lambda: client.responses.retrieve(response.id).output != [], timeout=30, interval=0.05
    )
    cancelled = client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    wait_until(lambda: unfinished(real_engine) == 0, timeout=30, interval=0.05)
    # Nothing is left that could still write (a late engine result must not overwrite the
    # cancel): the run has ended and left the registry.
    wait_until(lambda: run_ended(server, response.id), timeout=30, interval=0.05)
    assert client.responses.retrieve(response.id).status == "cancelled"


def test_prompt_cache_key_reuses_the_prefix(client: openai.OpenAI) -> None:
    def cached(key: str) -> int:
        response = client.responses.create(
            model=MODEL, input=LONG_PROMPT, prompt_cache_key=key, max_output_tokens=2, temperature=0
        )
        assert response.usage is not None and response.usage.input_tokens > 300
        return response.usage.input_tokens_details.cached_tokens

    assert cached("alpha-key") == 0
    assert cached("alpha-key") > 0
    assert cached("beta-key") == 0


def test_prefix_cache_never_crosses_api_keys(
    real_engine: EngineLoop, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With two keys on one engine: a repeated prompt of one key is served from the
    prefix cache; the same prompt from the other key, even under the first key's
    prompt_cache_key, is not (issue 13, finding 1)."""
    path: Path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    settings = Settings(port=0, responses_ping_interval_seconds=0, shutdown_grace_seconds=5,
                        api_keys=("k1", "k2"))
    # A prompt of its own: no other test has warmed the engine's cache with it.
    secret = LONG_PROMPT.replace("lighthouse keeper", "harbour master")
    with ServerThread(settings, engine=real_engine.proxy(), store=SQLiteStore(path)) as two, \
            strict_sdk(two, api_key="k1", timeout=300) as k1, \
            strict_sdk(two, api_key="k2", timeout=300) as k2:
        def cached(client: openai.OpenAI, key: str | None = None) -> int:
            response = client.responses.create(model=MODEL, input=secret, prompt_cache_key=key,
                                               max_output_tokens=2, temperature=0)
            assert response.usage is not None and response.usage.input_tokens > 300
            return response.usage.input_tokens_details.cached_tokens

        assert cached(k1) == 0
        assert cached(k1) > 0
        assert cached(k2) == 0
        assert cached(k1, "shared") == 0
        assert cached(k1, "shared") > 0
        assert cached(k2, "shared") == 0


def test_input_tokens_counts_the_prompt(client: openai.OpenAI, server: ServerThread) -> None:
    counted = httpx.post(
        server.base_url + "/v1/responses/input_tokens",
        json={"model": MODEL, "input": "What is the capital of France?"},
    )
    assert counted.status_code == 200
    body = counted.json()
    assert body["object"] == "response.input_tokens"
    response = client.responses.create(
        model=MODEL, input="What is the capital of France?", max_output_tokens=2
    )
    assert response.usage is not None and body["input_tokens"] == response.usage.input_tokens


def test_context_length_exceeded_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="word " * 5000, max_output_tokens=5)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"


def test_a_follow_up_in_a_conversation_needs_the_earlier_turn(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    told = client.responses.create(model=MODEL, input="The secret word is banana.",
                                   conversation=conversation.id, temperature=0,
                                   max_output_tokens=12)
    asked = client.responses.create(model=MODEL, input="What is the secret word?",
                                    conversation=conversation.id, temperature=0,
                                    max_output_tokens=12)
    assert "banana" in asked.output_text.lower(), asked.output_text
    # Without the conversation the model cannot know it.
    alone = client.responses.create(model=MODEL, input="What is the secret word?",
                                    temperature=0, max_output_tokens=12)
    assert "banana" not in alone.output_text.lower(), alone.output_text
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [item.id for item in items][1::2] == [told.output[0].id, asked.output[0].id]


WEATHER = {
    "type": "function", "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True,
}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_forced_tool_calls_match_the_schema(client: openai.OpenAI, choice: object) -> None:
    response = client.responses.create(model=MODEL, input="What is the weather in Paris?",
                                       tools=[WEATHER], tool_choice=choice,  # type: ignore[arg-type]
                                       temperature=0, max_output_tokens=60)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    arguments = json.loads(calls[0].arguments)
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)


def test_openai_agents_round_trip(server: ServerThread) -> None:
    import asyncio

    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"It is sunny in {city}."

    async def main() -> str:
        async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="unused",
                                      timeout=300) as sdk:
            agent = Agent(
                name="weather", instructions="Answer briefly.", tools=[get_weather],
                model=OpenAIResponsesModel(model=MODEL, openai_client=sdk),
                # A call is forced on the first turn; the agent resets the choice after it.
                model_settings=ModelSettings(tool_choice="required", temperature=0,
                                             max_tokens=60))
            result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
            return str(result.final_output)

    final = asyncio.run(main())
    assert len(seen) == 1 and seen[0]
    assert final.strip()


def test_codex_request_too_long_for_the_context_is_a_clear_400(server: ServerThread) -> None:
    """Codex CLI's request (tests/clients/codex_capture.py: its instructions trimmed, its
    tools whole)
    is longer than this engine's context (2,048 here; Codex's untrimmed prompt, about
    9,000 tokens, is longer than the default model's 8,192 too): the server counts it and
    refuses it at once with the error Codex reports as "out of room in the model's
    context window", never a hang."""
    body = dict(FIRST_REQUEST, model=MODEL)
    with httpx.Client(base_url=server.base_url, timeout=300) as http:
        counted = http.post("/v1/responses/input_tokens",
                            json={k: v for k, v in body.items() if k != "stream"})
        assert counted.status_code == 200, counted.text
        assert counted.json()["input_tokens"] > 4000  # the tool listing alone is ~4,400
        refused = http.post("/v1/responses", json=body, headers=HEADERS)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "input")
    assert "context" in error["message"]
