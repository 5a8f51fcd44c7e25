"""Fixtures shared by the whole suite: a scripted-engine server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The default model's tokenizer (the model is prepared if need be), for vLLM's
    reasoning and tool parsers."""
    from vllm.tokenizers.registry import get_tokenizer

    from trio_responses.engine.default_model import ensure_default_model

    return get_tokenizer(str(ensure_default_model()))


def serve_scripted(engine: ScriptedEngine,
                   tmp_path_factory: pytest.TempPathFactory) -> ServerThread:
    """A server (not started) for ``engine``, with its own store and no heartbeats."""
    path: Path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    settings = Settings(engine="scripted", port=0, responses_ping_interval_seconds=0,
                        shutdown_grace_seconds=2)
    return ServerThread(settings, engine=engine, store=SQLiteStore(path))


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server with a scripted engine (5 ms per token) and its own store."""
    engine = ScriptedEngine(token_delay=0.005, model_name="scripted")
    with serve_scripted(engine, tmp_path_factory) as server:
        yield server


def strict_sdk(server: ServerThread) -> openai.OpenAI:
    """The official SDK in strict mode, against ``server``, with no retries."""
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="test",
                         _strict_response_validation=True, max_retries=0)


@pytest.fixture
def client(scripted_server: ServerThread) -> Iterator[openai.OpenAI]:
    """The official SDK in strict mode, against the scripted server."""
    with strict_sdk(scripted_server) as sdk:
        yield sdk
