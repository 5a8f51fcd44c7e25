"""The clients people run read through heartbeats: the openai TypeScript SDK's stream
helper, the Vercel AI SDK (``ai`` + ``@ai-sdk/open-responses``) and openai-agents, each
over a slow scripted stream whose every gap between tokens (0.1 s) is longer than the
ping interval (0.03 s), so every stream carries heartbeats; the drivers count the ones
that went by on the wire, so a test knows its client really read through them.

By default heartbeats are SSE comments, which all of them skip. The ``response.ping``
events a request can ask for (``X-Responses-Ping-Events: true``) are for clients that
pass unknown events through: the Vercel AI SDK does, the TypeScript SDK's stream helper
does not (tested here, as the docs say). The official Python SDK, strict and default,
is tested in tests/server/test_heartbeat_http.py.

And each reports a failed response as the docs say: the error event carries OpenAI's
fields and the nested ``error`` object the Vercel AI SDK reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.node import run_node_client
from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.scripted import ScriptedEngine

MODEL = "scripted-clients"
CALL_PROMPT = "[[call:get_weather]] What is the weather in Paris?"
FORECAST = {"city": "text", "forecast": "sunny"}  # the scripted call's city is "text"


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, ScriptedEngine(model_name=MODEL, token_delay=0.1),
                        responses_ping_interval_seconds=0.03) as server:
        yield server


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Rate limits on, no extension-event flag: what a default deployment with limits
    runs."""
    with serve_scripted(tmp_path_factory, ScriptedEngine(model_name=MODEL),
                        rate_limit_requests_per_minute=1000,
                        rate_limit_tokens_per_minute=1_000_000) as server:
        yield server


def node(server: ServerThread, script: str, *args: str, ping_events: bool = False,
         rate_limit_events: bool = False) -> dict[str, Any]:
    env = {"PING_EVENTS": "true"} if ping_events else {}
    if rate_limit_events:
        env["RATE_LIMIT_EVENTS"] = "true"
    return run_node_client(script, *args, base_url=server.base_url + "/v1", model=MODEL,
                           env=env)


def test_typescript_stream_helper_reads_through_comment_heartbeats(slow_server: ServerThread
                                                                   ) -> None:
    report = node(slow_server, "openai_ts.mjs", "text", "slow reply")
    assert "error" not in report, report
    assert report["status"] == "completed" and report["text"] == "You said: slow reply"
    assert report["types"][0] == "response.created"
    assert report["types"][-1] == "response.completed"
    assert report["heartbeats"]["comments"] >= 2 and report["heartbeats"]["events"] == 0


def test_typescript_stream_helper_tool_loop_with_heartbeats(slow_server: ServerThread
                                                            ) -> None:
    """The issue's "done when": a multi-turn function-tool loop through the stream
    helper, heartbeats on: the model calls get_weather, the output goes back with
    previous_response_id, the next turn answers with it."""
    report = node(slow_server, "openai_ts.mjs", "tools")
    assert "error" not in report, report
    first, second = report["turns"]
    assert [call["name"] for call in first["calls"]] == ["get_weather"]
    assert json.loads(first["calls"][0]["arguments"]) == {"city": "text"}
    assert "response.function_call_arguments.done" in first["types"]
    assert second["calls"] == [] and second["status"] == "completed"
    assert json.loads(second["text"].removeprefix("The tool returned: ")) == FORECAST
    assert report["heartbeats"]["comments"] >= 4


def test_typescript_stream_helper_fails_on_ping_events(slow_server: ServerThread) -> None:
    """Why heartbeats are comments by default: the stream helper throws on an event
    type it does not know, as it would on any other server's."""
    report = node(slow_server, "openai_ts.mjs", "text", "slow reply", ping_events=True)
    assert "Unhandled response stream event" in report["error"], report


def test_typescript_stream_helper_works_with_rate_limits_on(limited_server: ServerThread
                                                           ) -> None:
    """Rate limits on and no opt-in: no response.rate_limits.updated event, so the
    unmodified stream helper completes (the figures are in the x-ratelimit-* headers)."""
    report = node(limited_server, "openai_ts.mjs", "text", "limited reply")
    assert "error" not in report, report
    assert report["status"] == "completed" and report["text"] == "You said: limited reply"
    assert "response.rate_limits.updated" not in report["types"]


def test_typescript_stream_helper_fails_on_rate_limit_events(limited_server: ServerThread
                                                             ) -> None:
    """Why the event is opt-in: asked for, it makes the stream helper throw."""
    report = node(limited_server, "openai_ts.mjs", "text", "limited reply",
                  rate_limit_events=True)
    assert "Unhandled response stream event" in report["error"], report


@pytest.mark.parametrize("ping_events", [False, True], ids=["comments", "ping-events"])
def test_vercel_ai_sdk_stream_text(slow_server: ServerThread, ping_events: bool) -> None:
    report = node(slow_server, "vercel_ai.mjs", "stream", "slow reply", ping_events=ping_events)
    assert "error" not in report and report["errors"] == [], report
    assert report["text"] == "You said: slow reply" and report["finishReason"] == "stop"
    kind = "events" if ping_events else "comments"
    assert report["heartbeats"][kind] >= 2


@pytest.mark.parametrize("ping_events", [False, True], ids=["comments", "ping-events"])
def test_vercel_ai_sdk_tool_loop(slow_server: ServerThread, ping_events: bool) -> None:
    report = node(slow_server, "vercel_ai.mjs", "tools", ping_events=ping_events)
    assert "error" not in report and report["errors"] == [], report
    first, second = report["steps"]
    assert first["finishReason"] == "tool-calls"
    assert first["toolCalls"] == [{"name": "get_weather", "input": {"city": "text"}}]
    assert first["toolResults"] == [FORECAST]
    assert second["finishReason"] == "stop"
    assert json.loads(second["text"].removeprefix("The tool returned: ")) == FORECAST
    kind = "events" if ping_events else "comments"
    assert report["heartbeats"][kind] >= 4


def test_vercel_ai_sdk_generate_text(slow_server: ServerThread) -> None:
    report = node(slow_server, "vercel_ai.mjs", "generate", "plain json")
    assert report == {"text": "You said: plain json", "finishReason": "stop",
                      "heartbeats": {"comments": 0, "events": 0}}


def test_openai_agents_streamed_tool_loop_with_heartbeats(slow_server: ServerThread) -> None:
    """openai-agents' Runner.run_streamed over the strict SDK: the agent calls the tool,
    the SDK runs it and sends the output back, the model answers with it. (The Python
    SDK hides comments from its caller; the same server's streams carry one in every
    gap, as the node drivers above count.)"""
    from agents import (
        Agent,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)  # no exporting of traces to OpenAI from a test
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city today."""
        calls.append(city)
        return json.dumps({"city": city, "forecast": "sunny"})

    async def main() -> tuple[str, list[str]]:
        client = openai.AsyncOpenAI(base_url=slow_server.base_url + "/v1", api_key="x",
                                    max_retries=0, _strict_response_validation=True)
        async with client:
            agent = Agent(name="weather", instructions="Answer with the tool.",
                          tools=[get_weather],
                          model=OpenAIResponsesModel(model=MODEL, openai_client=client))
            result = Runner.run_streamed(agent, CALL_PROMPT)
            kinds = [event.type async for event in result.stream_events()]
            return str(result.final_output), kinds

    final, kinds = asyncio.run(main())
    assert calls == ["text"]
    assert json.loads(final.removeprefix("The tool returned: ")) == {"city": "text",
                                                                     "forecast": "sunny"}
    assert "raw_response_event" in kinds


FAILURE = "The scripted engine failed this request (failure injection)."


def test_typescript_stream_helper_throws_the_error_of_a_failed_response(
        slow_server: ServerThread) -> None:
    report = node(slow_server, "openai_ts.mjs", "text", "go [[fail]] now")
    assert FAILURE in report["error"], report


def test_vercel_ai_sdk_reports_the_error_of_a_failed_response(slow_server: ServerThread
                                                              ) -> None:
    report = node(slow_server, "vercel_ai.mjs", "stream", "go [[fail]] now")
    assert "error" not in report, report
    assert report["errors"] and all(FAILURE in error for error in report["errors"]), report
    assert report["finishReason"] == "error"
