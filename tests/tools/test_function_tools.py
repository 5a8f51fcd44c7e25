"""Function tools over HTTP with the scripted engine: calls, forced calls, continuing a
conversation with tool outputs, openai-agents, and the opt-in tool-output wait."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.events import as_dict, check_stream
from tests.support.server import ServerThread
from tests.support.waiting import wait_until

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME = {"type": "function", "name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
WAIT = {"x-responses-tool-wait": "true"}


def valid_weather_arguments(arguments: str) -> bool:
    value = json.loads(arguments)
    return (set(value) == {"city", "days"} and isinstance(value["city"], str)
            and isinstance(value["days"], int))


def test_model_call_in_builtin_format(client: openai.OpenAI) -> None:
    response = client.responses.create(model="scripted", input="[[call:get_weather]]",
                                       tools=[WEATHER, TIME])
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.status == "completed" and call.call_id and call.id
    assert valid_weather_arguments(call.arguments)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_time"}])
def test_forced_calls_match_the_schema(client: openai.OpenAI, choice: Any) -> None:
    response = client.responses.create(model="scripted", input="no call asked for here",
                                       tools=[TIME, WEATHER], tool_choice=choice)
    [call] = response.output
    assert call.type == "function_call"
    expected = "get_time" if isinstance(choice, dict) else call.name
    assert call.name == expected and call.name in ("get_time", "get_weather")
    arguments = json.loads(call.arguments)
    assert "zone" in arguments if call.name == "get_time" else valid_weather_arguments(
        call.arguments)


def test_tool_choice_none_leaves_text(client: openai.OpenAI) -> None:
    response = client.responses.create(model="scripted", input="[[call:get_weather]]",
                                       tools=[WEATHER], tool_choice="none")
    assert [item.type for item in response.output] == ["message"]


def test_streamed_call_arguments_join(client: openai.OpenAI) -> None:
    with client.responses.stream(model="scripted", input="[[call:get_weather]]",
                                 tools=[WEATHER]) as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    deltas = "".join(e["delta"] for e in events
                     if e["type"] == "response.function_call_arguments.delta")
    [done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert deltas == done["arguments"] == final.output[0].arguments  # type: ignore[union-attr]


def test_function_call_output_continues(client: openai.OpenAI,
                                        scripted_server: ServerThread) -> None:
    first = client.responses.create(model="scripted", input="[[call:get_weather]]",
                                    tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call"
    # openai-agents style: the call replayed verbatim, then its output.
    second = client.responses.create(model="scripted", tools=[WEATHER], input=[
        {"role": "user", "content": "[[call:get_weather]]"},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "rainy"},
    ])
    assert second.output_text == "The tool returned: rainy"
    messages = scripted_server.call(lambda: scripted_server.engine.requests[-1].messages)  # type: ignore[union-attr]
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "rainy"}
    # The same through previous_response_id.
    third = client.responses.create(model="scripted", previous_response_id=first.id,
                                    tools=[WEATHER], input=[{
                                        "type": "function_call_output",
                                        "call_id": call.call_id, "output": "windy"}])
    assert third.output_text == "The tool returned: windy"


def test_openai_agents_round_trip(scripted_server: ServerThread) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    async def main() -> str:
        async with openai.AsyncOpenAI(base_url=scripted_server.base_url + "/v1",
                                      api_key="x") as client:
            model = OpenAIResponsesModel(model="scripted", openai_client=client)
            agent = Agent(name="weather", instructions="Be brief.", tools=[get_weather],
                          model=model)
            result = await Runner.run(agent, "Weather in Paris? [[call:get_weather]]")
            return str(result.final_output)

    # The agents SDK runs on asyncio; the server runs on Trio in its own thread.
    final = asyncio.run(main())
    assert seen == ["text"]  # the scripted call's argument
    assert final == "The tool returned: sunny in text"


# -- the tool-output wait ------------------------------------------------------------


class Streamer:
    """Reads a stream in a thread so the test can post tool outputs meanwhile."""

    def __init__(self, client: openai.OpenAI, **kwargs: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(client, kwargs), daemon=True)
        self._thread.start()

    def _read(self, client: openai.OpenAI, kwargs: dict[str, Any]) -> None:
        try:
            with client.responses.stream(**kwargs) as stream:
                for event in stream:
                    self.events.append(as_dict(event))
        except BaseException as exc:  # reported by join()
            self.error = exc

    def first(self, kind: str) -> dict[str, Any]:
        wait_until(lambda: any(e["type"] == kind for e in self.events), timeout=10)
        return next(e for e in self.events if e["type"] == kind)

    def join(self) -> list[dict[str, Any]]:
        self._thread.join(20)
        assert not self._thread.is_alive()
        if self.error is not None and not isinstance(self.error, RuntimeError):
            raise self.error
        return self.events


@pytest.fixture
def http(scripted_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scripted_server.base_url, timeout=10) as session:
        yield session


def post_outputs(http: httpx.Client, response_id: str, *outputs: tuple[str, str]
                 ) -> httpx.Response:
    return http.post(f"/v1/responses/{response_id}/tool_outputs", json={
        "tool_outputs": [{"call_id": c, "output": o} for c, o in outputs]})


def test_tool_wait_continues_the_same_stream(client: openai.OpenAI, http: httpx.Client) -> None:
    reader = Streamer(client, model="scripted", input="[[call:get_weather]]", tools=[WEATHER],
                      extra_headers=WAIT)
    item = reader.first("response.output_item.done")["item"]
    response_id = reader.events[0]["response"]["id"]
    # Bad posts are refused and leave the waiting response unharmed.
    bad = post_outputs(http, response_id, ("call_unknown", "x"))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_call_id"
    twice = post_outputs(http, response_id, (item["call_id"], "a"), (item["call_id"], "b"))
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "duplicate_call_id"
    assert http.get(f"/v1/responses/{response_id}").json()["status"] == "in_progress"
    ok = post_outputs(http, response_id, (item["call_id"], "sunny"))
    assert ok.status_code == 200 and ok.json()["id"] == response_id
    events = reader.join()
    check_stream(events)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["id"] == response_id
    assert [o["type"] for o in final["output"]] == ["function_call", "function_call_output",
                                                    "message"]
    assert final["output"][-1]["content"][0]["text"] == "The tool returned: sunny"
    late = post_outputs(http, response_id, (item["call_id"], "again"))
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "not_waiting_for_tool_outputs"


def test_after_a_forced_call_the_next_turn_is_taught_the_format(
        client: openai.OpenAI, http: httpx.Client, scripted_server: ServerThread) -> None:
    reader = Streamer(client, model="scripted", input="weather?", tools=[WEATHER],
                      tool_choice="required", extra_headers=WAIT)
    item = reader.first("response.output_item.done")["item"]
    response_id = reader.events[0]["response"]["id"]
    assert post_outputs(http, response_id, (item["call_id"], "sunny")).status_code == 200
    check_stream(reader.join())
    forced, free = scripted_server.call(
        lambda: scripted_server.engine.requests[-2:])  # type: ignore[union-attr]
    # The forced turn's structured output needed no instructions; the free turn after
    # it may call again, in the built-in format, so it is told how.
    assert not any("<tools>" in str(m.get("content")) for m in forced.messages)
    assert "<tools>" in str(free.messages[0]["content"])
    assert free.sampling.json_schema is None


def test_tool_outputs_for_a_response_that_does_not_wait(client: openai.OpenAI,
                                                        http: httpx.Client) -> None:
    response = client.responses.create(model="scripted", input="[[call:get_weather]]",
                                       tools=[WEATHER])
    assert response.status == "completed"
    reply = post_outputs(http, response.id, (response.output[0].call_id, "x"))  # type: ignore[union-attr]
    assert reply.status_code == 409
    missing = post_outputs(http, "resp_missing", ("call_x", "x"))
    assert missing.status_code == 404
    malformed = http.post(f"/v1/responses/{response.id}/tool_outputs", json={"outputs": []})
    assert malformed.status_code == 400


def test_cancel_while_waiting(client: openai.OpenAI, http: httpx.Client,
                              scripted_server: ServerThread) -> None:
    created = http.post("/v1/responses", headers=WAIT, json={
        "model": "scripted", "input": "[[call:get_weather]]", "tools": [WEATHER],
        "background": True, "store": True}).json()
    response_id = created["id"]
    wait_until(lambda: http.get(f"/v1/responses/{response_id}").json()["output"] != [],
               timeout=10)
    cancelled = client.responses.cancel(response_id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(response_id).status == "cancelled"
    assert post_outputs(http, response_id, ("call_x", "x")).status_code == 409


def test_disconnect_while_waiting(scripted_server: ServerThread, http: httpx.Client) -> None:
    body = {"model": "scripted", "input": "[[call:get_weather]]", "tools": [WEATHER],
            "stream": True}
    with http.stream("POST", "/v1/responses", json=body, headers=WAIT) as stream:
        for line in stream.iter_lines():
            if "response.output_item.done" in line:
                break
    registry = scripted_server.app_state.service.registry
    wait_until(lambda: scripted_server.call(lambda: len(registry.live())) == 0, timeout=10)
