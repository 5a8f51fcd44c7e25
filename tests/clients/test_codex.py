"""Codex CLI (npm ``@openai/codex``, pinned in package.json) against the server.

Two levels. The protocol-level tests replay a request Codex 0.169 really sent
(:mod:`tests.clients.codex_capture`): every field, header, tool kind and item shape of it
must be accepted, and its second turn (the whole history again, ``store: false``) must
complete. The end-to-end test runs ``codex exec``
itself against the server on loopback, with the scripted engine playing an agent script:
Codex runs the ``exec_command`` calls the "model" makes and sends their output back, and
the loop ends with an answer that quotes it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from quart import request, websocket

from tests.clients.codex_capture import FIRST_REQUEST, HEADERS
from tests.server.helpers import http_client
from tests.support.errors import assert_openai_error
from tests.support.events import as_dict, check_stream
from tests.support.npm_clients import npm_client
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.sse import read_sse
from trio_responses.protocol.request import CreateResponseRequest
from trio_responses.runtime.compaction import TRIGGER, open_compaction
from trio_responses.runtime.prepare import cache_salt

API_KEY = "codex-test-key"
CODEX_TIMEOUT = 120  # seconds for one `codex exec`; it takes about 2 s


@pytest.fixture(scope="module")
def http(scripted_server: ServerThread) -> Iterator[httpx.Client]:
    with http_client(scripted_server) as plain:
        yield plain


def post_stream(http: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    """``body`` sent as Codex sends it (its headers, SSE), the events read and checked."""
    with connect_sse(http, "POST", "/v1/responses", json=body, headers=HEADERS) as source:
        events = read_sse(source)
    check_stream(events)
    return events


def codex_replay(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as Codex puts it back in the next request's input."""
    return {key: item[key] for key in ("type", "status", "id", "name", "arguments", "call_id")}


# -- the captured request ---------------------------------------------------------------

def test_codex_first_request_and_its_next_turn(http: httpx.Client,
                                               scripted_server: ServerThread) -> None:
    body = FIRST_REQUEST
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    events = post_stream(http, body)
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["store"] is False
    assert final["client_metadata"] == body["client_metadata"]
    assert final["reasoning"]["summary"] == "auto"
    assert final["prompt_cache_key"] == body["prompt_cache_key"]
    assert [tool["type"] for tool in final["tools"]] == [tool["type"] for tool in body["tools"]]
    [call] = final["output"]
    assert (call["type"], call["name"], json.loads(call["arguments"])) == (
        "function_call", "exec_command", {"cmd": "echo hello"})
    engine = engine_of(scripted_server)
    first = scripted_server.call(lambda: engine.requests[-1])
    offered = [tool["function"]["name"] for tool in first.tools]
    namespace = next(tool for tool in body["tools"] if tool["type"] == "namespace")
    assert [f"{namespace['name']}__{tool['name']}" for tool in namespace["tools"]] == [
        name for name in offered if "__" in name]
    assert "exec_command" in offered and not any("web_search" in name for name in offered)
    # Its developer messages are system messages; the prompt cache key salts the cache
    # (with the API key: runtime/prepare.py cache_salt).
    assert [m["role"] for m in first.messages] == ["system", "system", "user", "user"]
    assert first.cache_salt == cache_salt("", CreateResponseRequest(
        model="scripted", prompt_cache_key=body["prompt_cache_key"]))

    # The next turn: the whole history again, with the call and Codex's output of it.
    output = {"type": "function_call_output", "id": "fco_00000000-0000-7000-8000-0000000000aa",
              "call_id": call["call_id"],
              "output": "Chunk ID: 5c4987\nProcess exited with code 0\nOutput:\nhello\n"}
    second = dict(body, input=[*body["input"], codex_replay(call), output])
    final = post_stream(http, second)[-1]["response"]
    [message] = final["output"]
    assert message["content"][0]["text"] == f"The tool returned: {output['output']}"
    replayed = scripted_server.call(lambda: engine.requests[-1]).messages
    assert replayed[-2]["tool_calls"][0]["id"] == call["call_id"]
    assert replayed[-1] == {"role": "tool", "tool_call_id": call["call_id"],
                            "content": output["output"]}


def test_codex_request_through_the_strict_sdk(client: openai.OpenAI) -> None:
    """Every event of a response to Codex's request parses in the SDK's strict models
    (the SDK has no ``client_metadata`` parameter: it goes as an extra body field)."""
    params = {key: value for key, value in FIRST_REQUEST.items()
              if key not in ("stream", "client_metadata")}
    with client.responses.stream(**params, extra_headers=HEADERS, extra_body={
            "client_metadata": FIRST_REQUEST["client_metadata"]}) as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    assert final.output[0].type == "function_call"
    assert [tool.type for tool in final.tools] == [t["type"] for t in FIRST_REQUEST["tools"]]


def test_an_unknown_field_beside_codex_fields_is_still_refused(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={**FIRST_REQUEST, "codex_future_field": 1},
                         headers=HEADERS)
    assert_openai_error(response, 400, param="codex_future_field", code="unknown_parameter")


# -- codex exec, end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded_server(tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[tuple[ServerThread, list[tuple[dict[str, str], bytes]]]]:
    """A scripted server with an API key that records every create request it receives
    (headers and raw body), before the app reads it."""
    server = serve_scripted(tmp_path_factory, api_keys=(API_KEY,))
    received: list[tuple[dict[str, str], bytes]] = []

    @server.app.before_request
    async def record() -> None:
        if request.method == "POST" and request.path == "/v1/responses":
            headers = {name.lower(): value for name, value in request.headers.items()}
            received.append((headers, await request.get_data(cache=True)))

    with server:
        yield server, received


def run_codex(server: ServerThread, prompt: str, root: Path, *, websockets: bool = False,
              config: str = "", capabilities: str = "") -> subprocess.CompletedProcess[str]:
    """``codex exec PROMPT`` with a provider for ``server`` (HTTP, the Responses API; with
    ``websockets``, its WebSocket mode first), in a folder of its own, with nothing of the
    caller's environment but PATH. ``config``: more top-level TOML (before any table);
    ``capabilities``: the provider's ``capabilities`` table's lines."""
    codex = npm_client("codex")
    home, workdir = root / "codex_home", root / "work"
    home.mkdir()
    workdir.mkdir()
    (home / "config.toml").write_text(
        'model = "scripted"\n'
        'model_provider = "local"\n'
        f"{config}"
        "[model_providers.local]\n"
        'name = "local"\n'
        f'base_url = "{server.base_url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "LOCAL_KEY"\n'
        f'supports_websockets = {"true" if websockets else "false"}\n'
        + (f"[model_providers.local.capabilities]\n{capabilities}" if capabilities else ""),
        encoding="utf-8")
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "CODEX_HOME": str(home),
           "LOCAL_KEY": API_KEY}
    return subprocess.run([str(codex), "exec", "--skip-git-repo-check", prompt], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=CODEX_TIMEOUT,
                          check=False)


def test_codex_exec_runs_a_tool_loop(
        recorded_server: tuple[ServerThread, list[tuple[dict[str, str], bytes]]],
        tmp_path: Path) -> None:
    server, received = recorded_server
    # Two model turns that call exec_command (the shell computes 6*7: Codex really ran
    # it), then an answer quoting the last output.
    prompt = ('[[call:exec_command {"cmd": "echo first-$((6*7))"}]] [[then]] '
              '[[call:exec_command {"cmd": "echo second-$((7*6))"}]]')
    done = run_codex(server, prompt, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("The tool returned: "), done.stdout
    assert "second-42" in done.stdout and "first-42" not in done.stdout

    assert len(received) == 3, [headers.get("x-client-request-id") for headers, _ in received]
    bodies = [json.loads(body) for _, body in received]
    for headers, _ in received:
        assert headers["authorization"] == f"Bearer {API_KEY}"
        assert headers["originator"] == "codex_exec" and headers["session-id"]
    for body in bodies:
        assert body["store"] is False and body["stream"] is True
        assert "previous_response_id" not in body and body["client_metadata"]
        assert any(tool["type"] == "namespace" for tool in body["tools"])
    # Each turn resends the whole history: the calls so far, each with its output.
    calls = [[item for item in body["input"] if item["type"] == "function_call"]
             for body in bodies]
    outputs = [[item for item in body["input"] if item["type"] == "function_call_output"]
               for body in bodies]
    assert [len(turn) for turn in calls] == [len(turn) for turn in outputs] == [0, 1, 2]
    assert [json.loads(call["arguments"])["cmd"] for call in calls[2]] == [
        "echo first-$((6*7))", "echo second-$((7*6))"]
    assert [o["call_id"] for o in outputs[2]] == [c["call_id"] for c in calls[2]]
    assert "first-42" in outputs[1][0]["output"] and "second-42" in outputs[2][1]["output"]
    assert bodies[2]["input"][:-2] == bodies[1]["input"]


def test_codex_exec_runs_a_tool_loop_over_a_websocket(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """With ``supports_websockets = true`` Codex upgrades ``GET /v1/responses`` and runs
    the whole turn on the socket: a warmup (``generate: false``, nothing reaches the
    engine), then each model turn continuing the last by ``previous_response_id`` with
    ``store: false`` (the connection keeps their context), and never falls back to HTTP."""
    server = serve_scripted(tmp_path_factory, api_keys=(API_KEY,))
    upgrades: list[dict[str, str]] = []
    http_creates: list[str] = []

    @server.app.before_websocket
    async def record_upgrade() -> None:
        upgrades.append({name.lower(): value for name, value in websocket.headers.items()})

    @server.app.before_request
    async def record_http() -> None:
        if request.path.startswith("/v1/responses"):
            http_creates.append(f"{request.method} {request.path}")

    prompt = ('[[call:exec_command {"cmd": "echo first-$((6*7))"}]] [[then]] '
              '[[call:exec_command {"cmd": "echo second-$((7*6))"}]]')
    with server:
        done = run_codex(server, prompt, tmp_path, websockets=True)
        engine = engine_of(server)
        requests = server.call(lambda: list(engine.requests))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("The tool returned: "), done.stdout
    assert "second-42" in done.stdout
    assert http_creates == []
    assert len(upgrades) == 1
    [upgrade] = upgrades
    assert upgrade["authorization"] == f"Bearer {API_KEY}"
    assert upgrade["openai-beta"].startswith("responses_websockets=")
    # Three model turns reached the engine (the warmup did not); each later one had the
    # whole history, rebuilt from the connection's context of the turn before.
    assert len(requests) == 3
    tool_messages = [[m for m in r.messages if m.get("role") == "tool"] for r in requests]
    assert [len(messages) for messages in tool_messages] == [0, 1, 2]
    assert "second-42" in str(tool_messages[2][1]["content"])


def test_codex_exec_compacts_remotely_and_goes_on(tmp_path_factory: pytest.TempPathFactory,
                                                 tmp_path: Path) -> None:
    """Codex's remote compaction (``remote_compaction = "v2"``), with an auto-compact
    limit every turn passes (its own instructions are thousands of tokens): after each
    model turn Codex asks the server to compact, replaces its history with the sealed
    compaction item it gets, and sends that item back with the next turn. The agent
    script goes on from where it was (the scripted engine's summary keeps its place), so
    each command runs once and the answer quotes the last output, which only the summary
    still holds."""
    server = serve_scripted(tmp_path_factory, api_keys=(API_KEY,))
    received: list[tuple[str, dict[str, Any]]] = []

    @server.app.before_request
    async def record() -> None:
        if request.method == "POST" and request.path.startswith("/v1/responses"):
            received.append((request.path, json.loads(await request.get_data(cache=True))))

    prompt = ('[[call:exec_command {"cmd": "echo first-$((6*7))"}]] [[then]] '
              '[[call:exec_command {"cmd": "echo second-$((7*6))"}]]')
    with server:
        done = run_codex(server, prompt, tmp_path,
                         config="model_auto_compact_token_limit = 40\n"
                                "[features]\nremote_compaction_v2 = true\n",
                         capabilities='remote_compaction = "v2"\n')
        sealer = server.app_state.service.sealer
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("The tool returned: "), done.stdout
    assert "second-42" in done.stdout
    assert done.stderr.count("context compacted") >= 1, done.stderr[-3000:]
    # Each command ran once: the script did not start again after a compaction.
    ran = [line for line in done.stderr.splitlines() if line.startswith("/bin/bash -lc")]
    assert ran == [f"/bin/bash -lc 'echo {cmd}' in {tmp_path / 'work'}"
                   for cmd in ("first-$((6*7))", "second-$((7*6))")], done.stderr[-3000:]

    def compaction_items(body: dict[str, Any]) -> list[dict[str, Any]]:
        items = body.get("input")
        return [item for item in items if item.get("type") == "compaction"] \
            if isinstance(items, list) else []

    # Compactions asked for (by /compact, or by a create ending in compaction_trigger) ...
    asked = [path for path, body in received if path == "/v1/responses/compact"
             or any(isinstance(body.get("input"), list) and item.get("type") == TRIGGER
                    for item in body.get("input") or [])]
    assert asked, [path for path, _ in received]
    # ... and the sealed items they returned, sent back by later turns, open as ours.
    sent_back = [item for _, body in received for item in compaction_items(body)]
    assert sent_back, [path for path, _ in received]
    for item in sent_back:
        summary, users = open_compaction(sealer, item["encrypted_content"])
        assert summary.startswith("[[done:"), summary
        assert any("[[call:exec_command" in text for text in users)
