"""Compaction with the scripted engine, through the strict SDK (and the TypeScript SDK):
``client.responses.compact(...)`` returns the ``response.compaction`` object with one
sealed ``compaction`` item; a later request with that item gets the summary and the user
messages in place of the history; ``context_management`` compacts a create request's
prompt first, with the item and ``response.compaction.compacting`` in its stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.server.helpers import http_client
from tests.support.errors import assert_openai_error
from tests.support.events import as_dict, check_stream
from tests.support.node import run_node_client
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.runtime.compaction import SUMMARY_INSTRUCTION, SUMMARY_PREFIX

HISTORY: list[Any] = [
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada."},
    {"role": "user", "content": "Remember the number 42."},
    {"role": "assistant", "content": "I will."},
]


@pytest.fixture(scope="module")
def http(scripted_server: ServerThread) -> Iterator[httpx.Client]:
    with http_client(scripted_server) as plain:
        yield plain


def prompts(server: ServerThread, last: int) -> list[list[dict[str, Any]]]:
    engine = engine_of(server)
    return server.call(lambda: [[dict(m) for m in r.messages] for r in engine.requests[-last:]])


def test_compact_returns_one_sealed_compaction_item(client: openai.OpenAI,
                                                    scripted_server: ServerThread) -> None:
    compacted = client.responses.compact(model="scripted", input=HISTORY,
                                         instructions="Be brief.")
    assert compacted.object == "response.compaction"
    [item] = compacted.output
    assert item.type == "compaction" and item.encrypted_content  # type: ignore[union-attr]
    assert compacted.usage.output_tokens > 0 and compacted.usage.input_tokens > 0
    [summarizing] = prompts(scripted_server, 1)
    assert summarizing[0] == {"role": "system", "content": "Be brief."}
    assert summarizing[-1] == {"role": "user", "content": SUMMARY_INSTRUCTION}
    assert summarizing[1:-1] == [{"role": m["role"], "content": m["content"]} for m in HISTORY]
    # The next stateless turn: the compaction item, then a new question.
    after = client.responses.create(model="scripted", store=False, input=[
        item.model_dump(exclude_none=True), {"role": "user", "content": "What is my name?"}])
    assert after.output_text == "You said: What is my name?"
    [prompt] = prompts(scripted_server, 1)
    summary = f"{SUMMARY_PREFIX}You said: {SUMMARY_INSTRUCTION}"
    assert prompt == [{"role": "user", "content": summary},
                      {"role": "user", "content": "My name is Ada."},
                      {"role": "user", "content": "Remember the number 42."},
                      {"role": "user", "content": "What is my name?"}]


def test_a_compaction_item_stands_for_everything_before_it(client: openai.OpenAI,
                                                           scripted_server: ServerThread
                                                           ) -> None:
    [item] = client.responses.compact(model="scripted", input=HISTORY).output
    client.responses.create(model="scripted", store=False, input=[
        *HISTORY, item.model_dump(exclude_none=True), {"role": "user", "content": "next"}])
    [prompt] = prompts(scripted_server, 1)
    assert prompt[0]["content"].startswith(SUMMARY_PREFIX)
    assert [m["content"] for m in prompt[1:]] == ["My name is Ada.", "Remember the number 42.",
                                                  "next"]


def test_compact_after_a_previous_response(client: openai.OpenAI,
                                           scripted_server: ServerThread) -> None:
    first = client.responses.create(model="scripted", input="first words")
    compacted = client.responses.compact(model="scripted", input="second words",
                                         previous_response_id=first.id)
    [summarizing] = prompts(scripted_server, 1)
    assert [m["content"] for m in summarizing] == [
        "first words", "You said: first words", "second words", SUMMARY_INSTRUCTION]
    assert compacted.output[0].type == "compaction"


@pytest.mark.parametrize("spoil", [
    lambda v: v[:-3],
    lambda v: v[:20] + ("B" if v[20] != "B" else "C") + v[21:],
    lambda v: "x",
])
def test_a_spoiled_compaction_item_is_a_400(http: httpx.Client, spoil: Any) -> None:
    made = http.post("/v1/responses/compact", json={"model": "scripted", "input": HISTORY})
    assert made.status_code == 200, made.text
    [item] = made.json()["output"]
    item["encrypted_content"] = spoil(item["encrypted_content"])
    bad = http.post("/v1/responses", json={"model": "scripted", "store": False, "input": [
        {"role": "user", "content": "hi"}, item, {"role": "user", "content": "q"}]})
    assert_openai_error(bad, 400, param="input[1].encrypted_content",
                        code="invalid_encrypted_content")


@pytest.mark.parametrize("body, param, code", [
    ({"input": "x", "store": True}, "store", "unknown_parameter"),
    ({"input": "x", "model": "other"}, "model", "model_not_found"),
    ({}, "input", "missing_required_parameter"),
    ({"input": [{"type": "compaction"}]}, "input[0].encrypted_content",
     "missing_required_parameter"),
])
def test_bad_compact_requests(http: httpx.Client, body: dict[str, Any], param: str,
                              code: str) -> None:
    bad = http.post("/v1/responses/compact", json={"model": "scripted", **body})
    assert_openai_error(bad, 404 if code == "model_not_found" else 400, param=param, code=code)


def test_context_management_compacts_first(client: openai.OpenAI,
                                           scripted_server: ServerThread) -> None:
    with client.responses.stream(
            model="scripted", input=[*HISTORY, {"role": "user", "content": "And now?"}],
            context_management=[{"type": "compaction", "compact_threshold": 10}]) as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    kinds = [e["type"] for e in events]
    assert kinds[:5] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.compaction.compacting",
                         "response.output_item.done"]
    compaction, message = final.output
    assert compaction.type == "compaction" and compaction.encrypted_content  # type: ignore[union-attr]
    assert final.output_text == "You said: And now?"
    summarizing, answering = prompts(scripted_server, 2)
    assert summarizing[-1]["content"] == SUMMARY_INSTRUCTION
    assert answering[0]["content"].startswith(SUMMARY_PREFIX)
    assert [m["content"] for m in answering[1:]] == [
        "My name is Ada.", "Remember the number 42.", "And now?"]
    # Both turns are counted.
    answer_words = len(message.content[0].text.split())  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens > answer_words
    # A chain after it starts from the compaction, not from the history it replaced.
    client.responses.create(model="scripted", input="later", previous_response_id=final.id)
    [later] = prompts(scripted_server, 1)
    assert later[0]["content"].startswith(SUMMARY_PREFIX)
    assert [m["content"] for m in later[1:]] == [
        "My name is Ada.", "Remember the number 42.", "And now?", "You said: And now?",
        "later"]


def test_context_management_under_the_threshold_does_nothing(
        client: openai.OpenAI, scripted_server: ServerThread) -> None:
    response = client.responses.create(
        model="scripted", input="short",
        context_management=[{"type": "compaction", "compact_threshold": 1000}])
    assert [item.type for item in response.output] == ["message"]
    [prompt] = prompts(scripted_server, 1)
    assert prompt == [{"role": "user", "content": "short"}]


@pytest.mark.parametrize("entry, param", [
    ({"type": "truncation"}, "context_management[0].type"),
    ({"type": "compaction", "compact_threshold": 0}, "context_management[0].compact_threshold"),
    ({"type": "compaction", "extra": 1}, "context_management[0].extra"),
])
def test_bad_context_management_is_a_400(http: httpx.Client, entry: dict[str, Any],
                                         param: str) -> None:
    bad = http.post("/v1/responses", json={"model": "scripted", "input": "x",
                                           "context_management": [entry]})
    assert_openai_error(bad, 400, param=param)


def test_typescript_sdk_compacts(scripted_server: ServerThread) -> None:
    report = run_node_client("openai_ts.mjs", "compact", base_url=scripted_server.base_url
                             + "/v1", model="scripted")
    assert "error" not in report, report
    assert report["object"] == "response.compaction" and report["output"] == ["compaction"]
    assert report["sealed"] == "string" and report["usage"] > 0
    assert report["after"] == "You said: What is my name?"
    assert "response.compaction.compacting" in report["types"]
    assert report["final"] == ["compaction", "message"]


def test_a_compaction_trigger_answers_with_the_compaction_alone(
        client: openai.OpenAI, scripted_server: ServerThread) -> None:
    """Codex's remote compaction and the TypeScript SDK's tool runner: the input ends with
    a ``compaction_trigger``; the response's output is one compaction item."""
    with client.responses.stream(model="scripted", store=False, input=[
            *HISTORY, {"type": "compaction_trigger"}]) as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    [item] = final.output
    assert item.type == "compaction" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0
    [summarizing] = prompts(scripted_server, 1)  # one engine turn: the summary
    assert summarizing[-1]["content"] == SUMMARY_INSTRUCTION
    after = client.responses.create(model="scripted", store=False, input=[
        item.model_dump(exclude_none=True), {"role": "user", "content": "go on"}])
    assert after.output_text == "You said: go on"



def test_a_stored_compaction_trigger_response_lists_its_input_without_the_trigger(
        client: openai.OpenAI) -> None:
    made = client.responses.create(model="scripted", store=True, input=[
        *HISTORY, {"type": "compaction_trigger"}])
    assert [item.type for item in made.output] == ["compaction"]
    items = client.responses.input_items.list(made.id, order="asc").data  # strict SDK
    assert [item.type for item in items] == ["message"] * len(HISTORY)
    later = client.responses.create(model="scripted", input="and then",
                                    previous_response_id=made.id)
    assert later.output_text == "You said: and then"


def test_a_compaction_trigger_must_be_last(http: httpx.Client) -> None:
    bad = http.post("/v1/responses", json={"model": "scripted", "input": [
        {"type": "compaction_trigger"}, {"role": "user", "content": "x"}]})
    assert_openai_error(bad, 400, param="input[0].type")


# -- compaction inside the run: response.created first, cancel and disconnect abort it ----

SUMMARY_ID = "_compact"


@pytest.fixture(scope="module")
def stalling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A scripted model whose summary requests stall after their first token."""
    engine = ScriptedEngine(model_name="scripted",
                            stall_when=lambda r: r.request_id.endswith(SUMMARY_ID))
    with serve_scripted(tmp_path_factory, engine=engine) as server:
        yield server


def summary_running(server: ServerThread) -> bool:
    engine = engine_of(server)
    return server.call(lambda: any(r.endswith(SUMMARY_ID) for r in engine.running_ids()))


def summaries_aborted(server: ServerThread) -> list[str]:
    engine = engine_of(server)
    return server.call(lambda: [r for r in engine.aborted if r.endswith(SUMMARY_ID)])


def test_the_stream_starts_before_the_summary_is_written(stalling_server: ServerThread
                                                         ) -> None:
    """created, in_progress, the compaction item added and compaction.compacting come
    while the summary is still being written; the client leaving then aborts it."""
    before = len(summaries_aborted(stalling_server))
    with strict_sdk(stalling_server) as sdk:
        with sdk.responses.stream(
                model="scripted", input=[*HISTORY, {"role": "user", "content": "And now?"}],
                context_management=[{"type": "compaction", "compact_threshold": 10}]
        ) as stream:
            kinds = []
            for event in stream:
                kinds.append(event.type)
                if event.type == "response.compaction.compacting":
                    break
            assert kinds == ["response.created", "response.in_progress",
                             "response.output_item.added", "response.compaction.compacting"]
            assert summary_running(stalling_server)
    # The client left mid-compaction: the summary's engine request is aborted.
    wait_until(lambda: len(summaries_aborted(stalling_server)) == before + 1,
               what="the summary request aborted")
    wait_until(lambda: not summary_running(stalling_server), what="nothing running")


def test_cancel_during_the_compaction_aborts_it(stalling_server: ServerThread) -> None:
    before = len(summaries_aborted(stalling_server))
    with strict_sdk(stalling_server) as sdk:
        started = sdk.responses.create(
            model="scripted", background=True,
            input=[*HISTORY, {"role": "user", "content": "And now?"}],
            context_management=[{"type": "compaction", "compact_threshold": 10}])
        wait_until(lambda: summary_running(stalling_server), what="the summary running")
        cancelled = sdk.responses.cancel(started.id)
        assert cancelled.status == "cancelled"
        wait_until(lambda: len(summaries_aborted(stalling_server)) == before + 1,
                   what="the summary request aborted")
        assert not summary_running(stalling_server)
        [item] = sdk.responses.retrieve(started.id).output
        assert item.type == "compaction"
        # Its events, replayed, are a well-formed stream ending cancelled.
        events = [as_dict(e) for e in sdk.responses.retrieve(started.id, stream=True)]
    check_stream(events)
    assert [e["type"] for e in events][:4] == [
        "response.created", "response.queued", "response.in_progress",
        "response.output_item.added"] or [e["type"] for e in events][:4] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.compaction.compacting"]
    assert events[-1]["response"]["status"] == "cancelled"
