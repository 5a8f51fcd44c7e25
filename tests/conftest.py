"""Fixtures shared by the whole suite: a scripted-engine server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server with a scripted engine (5 ms per token) and its own store."""
    path: Path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    engine = ScriptedEngine(token_delay=0.005, model_name="scripted")
    settings = Settings(engine="scripted", port=0, responses_ping_interval_seconds=0,
                        shutdown_grace_seconds=2)
    with ServerThread(settings, engine=engine, store=SQLiteStore(path)) as server:
        yield server


@pytest.fixture
def client(scripted_server: ServerThread) -> Iterator[openai.OpenAI]:
    """The official SDK in strict mode, against the scripted server."""
    with openai.OpenAI(base_url=scripted_server.base_url + "/v1", api_key="test",
                       _strict_response_validation=True, max_retries=0) as sdk:
        yield sdk
