"""Encrypted reasoning: ``include: ["reasoning.encrypted_content"]`` seals each reasoning
item's text under the server's key; a stateless client (``store: false``, the whole
history every turn, as Codex CLI runs) sends the items back and the server opens them
into the prompt exactly as a ``previous_response_id`` chain gives it. Scripted engine with
``<think>`` output split by vLLM's qwen3 reasoning parser, strict SDK."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.server.helpers import http_client
from tests.support.errors import assert_openai_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from trio_responses.engine.reasoning import ReasoningParsers
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.runtime.sealed_items import open_reasoning, reasoning_sealer
from trio_responses.runtime.sealing import (
    KeyFileError,
    Sealer,
    SealError,
    load_sealer,
    new_key_line,
)

INCLUDE = ["reasoning.encrypted_content"]


def key_file(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"old": new_key_line(), "new": new_key_line()}


def thinking(tmp_path_factory: pytest.TempPathFactory, qwen3: ReasoningParsers,
             *key_lines: str) -> ServerThread:
    folder = tmp_path_factory.mktemp("keys")
    engine = ScriptedEngine(token_delay=0.001, model_name="scripted", reasoning=qwen3)
    return serve_scripted(tmp_path_factory, engine,
                          sealing_key_file=str(key_file(folder / "k", *key_lines)))


@pytest.fixture(scope="module")
def old_server(tmp_path_factory: pytest.TempPathFactory, qwen3: ReasoningParsers,
               keys: dict[str, str]) -> Iterator[ServerThread]:
    with thinking(tmp_path_factory, qwen3, keys["old"]) as server:
        yield server


@pytest.fixture(scope="module")
def rotated_server(tmp_path_factory: pytest.TempPathFactory, qwen3: ReasoningParsers,
                   keys: dict[str, str]) -> Iterator[ServerThread]:
    """A replica after rotation: the new key seals, the old one still opens."""
    with thinking(tmp_path_factory, qwen3, "# rotated", keys["new"], keys["old"]) as server:
        yield server


@pytest.fixture
def sdk(old_server: ServerThread) -> Iterator[openai.OpenAI]:
    with strict_sdk(old_server) as client:
        yield client


@pytest.fixture(scope="module")
def http(old_server: ServerThread) -> Iterator[httpx.Client]:
    with http_client(old_server) as plain:
        yield plain


def prompt_of(server: ServerThread) -> list[dict[str, Any]]:
    engine = engine_of(server)
    return server.call(lambda: [dict(m) for m in engine.requests[-1].messages])


def first_turn(http: httpx.Client, text: str = "[[think]] first question") -> dict[str, Any]:
    made = http.post("/v1/responses", json={"model": "scripted", "input": text,
                                            "store": False, "include": INCLUDE})
    assert made.status_code == 200, made.text
    return made.json()


def test_a_stateless_loop_carries_its_reasoning_sealed(
        sdk: openai.OpenAI, old_server: ServerThread) -> None:
    history: list[Any] = []
    prompts: list[list[dict[str, Any]]] = []
    for turn in ("[[think]] one two", "[[think]] three", "[[think]] four five six"):
        history.append({"role": "user", "content": turn})
        response = sdk.responses.create(model="scripted", input=history, store=False,
                                        include=INCLUDE)  # type: ignore[list-item]
        prompts.append(prompt_of(old_server))
        reasoning, message = response.output
        assert reasoning.type == "reasoning" and message.type == "message"
        assert reasoning.encrypted_content  # type: ignore[union-attr]
        assert reasoning.encrypted_content != reasoning.content[0].text  # type: ignore[union-attr, index]
        # What the client carries: the item as it came, sealed text and all.
        history += [item.model_dump(exclude_none=True) for item in response.output]
    # Turn 3's prompt has the reasoning of turns 1 and 2 with their answers.
    assistant = [m for m in prompts[2] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in assistant] == [
        "The user wrote 2 words. I will answer.", "The user wrote 1 words. I will answer."]
    assert [m["content"] for m in assistant] == ["You said: one two", "You said: three"]


def test_sealed_reasoning_alone_restores_the_prompt_of_a_chain(
        sdk: openai.OpenAI, old_server: ServerThread) -> None:
    """Sent back with only its sealed text (no content), the prompt is the chain's."""
    first = sdk.responses.create(model="scripted", input="[[think]] a b c", store=True,
                                 include=INCLUDE)
    sdk.responses.create(model="scripted", input="[[think]] next",
                         previous_response_id=first.id)
    chained = prompt_of(old_server)
    carried = [item.model_dump(exclude_none=True) for item in first.output]
    carried[0].pop("content")  # the sealed value alone carries the text
    sdk.responses.create(model="scripted", store=False, input=[
        {"role": "user", "content": "[[think]] a b c"}, *carried,
        {"role": "user", "content": "[[think]] next"}])
    assert prompt_of(old_server) == chained
    assert chained[1]["reasoning_content"] == "The user wrote 3 words. I will answer."


def without_content(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if key != "content"}


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda v: v[:-8] + ("A" if v[-8] != "A" else "B") + v[-7:], id="tampered"),
    pytest.param(lambda v: v[: len(v) // 2], id="truncated"),
    pytest.param(lambda v: v[:10], id="cut-to-the-header"),
    pytest.param(lambda v: "not base64 at all!", id="garbage"),
    pytest.param(lambda v: Sealer.generate().seal("reasoning", b'{"text": "x"}'), id="foreign"),
    pytest.param(lambda v: "", id="empty"),
])
def test_spoiled_sealed_reasoning_is_a_400_naming_the_item(http: httpx.Client, spoil: Any
                                                           ) -> None:
    reasoning, message = first_turn(http)["output"]
    sent = without_content(reasoning)
    sent["encrypted_content"] = spoil(reasoning["encrypted_content"])
    bad = http.post("/v1/responses", json={"model": "scripted", "store": False, "input": [
        {"role": "user", "content": "q"}, sent, message, {"role": "user", "content": "r"}]})
    assert_openai_error(bad, 400, param="input[1].encrypted_content",
                        code="invalid_encrypted_content")


def test_a_compaction_seal_does_not_open_as_reasoning() -> None:
    sealer = Sealer.generate()
    sealed = sealer.seal("compaction", b'{"text": "x"}')
    with pytest.raises(SealError):
        open_reasoning(sealer, sealed)
    assert open_reasoning(sealer, reasoning_sealer(sealer)("thought")) == "thought"


def test_key_rotation_and_replicas(old_server: ServerThread, rotated_server: ServerThread
                                   ) -> None:
    with http_client(old_server) as old, http_client(rotated_server) as rotated:
        reasoning, message = first_turn(old)["output"]
        history = [{"role": "user", "content": "q"}, without_content(reasoning), message,
                   {"role": "user", "content": "r"}]
        # The rotated replica still opens what the old key sealed ...
        opened = rotated.post("/v1/responses", json={"model": "scripted", "store": False,
                                                     "input": history})
        assert opened.status_code == 200, opened.text
        assert prompt_of(rotated_server)[1]["reasoning_content"].startswith("The user wrote")
        # ... and seals with the new key, which a server without it cannot open.
        new_reasoning, new_message = first_turn(rotated)["output"]
        assert new_reasoning["encrypted_content"] != reasoning["encrypted_content"]
        foreign = old.post("/v1/responses", json={"model": "scripted", "store": False,
                                                  "input": [without_content(new_reasoning),
                                                            new_message]})
        assert_openai_error(foreign, 400, param="input[0].encrypted_content",
                            code="invalid_encrypted_content")


def test_without_the_include_no_sealed_content(http: httpx.Client) -> None:
    made = http.post("/v1/responses", json={"model": "scripted", "input": "[[think]] x",
                                            "store": False}).json()
    assert "encrypted_content" not in made["output"][0]


def test_the_key_file_is_made_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "sealing.keys"
    made = load_sealer(path, create=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_sealer(path, create=True)  # the same file, the same key
    assert again.open("p", made.seal("p", b"x")) == b"x"
    with pytest.raises(KeyFileError):
        load_sealer(tmp_path / "missing", create=False)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "not-base64!!\n",
                                  base64.b64encode(b"short").decode() + "\n"])
def test_a_bad_key_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(KeyFileError):
        load_sealer(path, create=False)
