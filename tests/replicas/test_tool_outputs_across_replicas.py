"""Tool outputs posted on another replica reach the one whose response waits for them
(``X-Responses-Tool-Wait``): bad posts are refused with the running replica's own error,
a good one continues the same stream there, a late one is a 409."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.reliability.procs import ServerProcess
from tests.support.events import check_stream

WEATHER = {"type": "function", "name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def post_outputs(base_url: str, response_id: str, *outputs: tuple[str, str]) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/responses/{response_id}/tool_outputs", timeout=30,
                      json={"tool_outputs": [{"call_id": c, "output": o} for c, o in outputs]})


def test_tool_outputs_posted_on_another_replica(replicas: list[ServerProcess]) -> None:
    a, b, c = replicas
    events: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as http, http.stream(
            "POST", a.base_url + "/v1/responses", headers={"x-responses-tool-wait": "true"},
            json={"model": "scripted", "input": "[[call:get_weather]]", "tools": [WEATHER],
                  "stream": True}) as reply:
        lines = reply.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "response.output_item.done":
                    break
        response_id = events[0]["response"]["id"]
        call_id = events[-1]["item"]["call_id"]
        bad = post_outputs(b.base_url, response_id, ("call_unknown", "x"))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_call_id"
        ok = post_outputs(b.base_url, response_id, (call_id, "sunny"))
        assert ok.status_code == 200 and ok.json()["id"] == response_id
        events.extend(json.loads(line[6:]) for line in lines
                      if line.startswith("data: ") and line != "data: [DONE]")
    check_stream(events)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert final["output"][-1]["content"][0]["text"] == "The tool returned: sunny"
    late = post_outputs(c.base_url, response_id, (call_id, "again"))
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "not_waiting_for_tool_outputs"
