"""Fixtures shared by the whole suite: a scripted-engine server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.postgres import Cluster, throwaway_cluster, unavailable_reason
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.scripted import ScriptedEngine


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The default model's tokenizer (the model is prepared if need be), for vLLM's
    reasoning and tool parsers."""
    from vllm.tokenizers.registry import get_tokenizer

    from trio_responses.engine.default_model import ensure_default_model

    return get_tokenizer(str(ensure_default_model()))


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server with a scripted engine (5 ms per token, paced per step as the server
    paces it by default) and its own store."""
    engine = ScriptedEngine(token_delay=0.005, model_name="scripted", step_pacing=True)
    with serve_scripted(tmp_path_factory, engine) as server:
        yield server


@pytest.fixture
def client(scripted_server: ServerThread) -> Iterator[openai.OpenAI]:
    """The official SDK in strict mode, against the scripted server."""
    with strict_sdk(scripted_server) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session (tests/support/postgres.py). Skipped
    with the reason where PostgreSQL cannot run; in CI (CI=true) that is a failure, since
    scripts/setup installs it there."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
        pytest.skip(reason)
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    """The URL of a new empty database, dropped after the test."""
    url = postgres_cluster.new_database()
    yield url
    postgres_cluster.drop_database(url)
