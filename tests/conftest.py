"""Fixtures shared by the whole suite: a scripted-engine server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

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
    """A server with a scripted engine (5 ms per token) and its own store."""
    engine = ScriptedEngine(token_delay=0.005, model_name="scripted")
    with serve_scripted(tmp_path_factory, engine) as server:
        yield server


@pytest.fixture
def client(scripted_server: ServerThread) -> Iterator[openai.OpenAI]:
    """The official SDK in strict mode, against the scripted server."""
    with strict_sdk(scripted_server) as sdk:
        yield sdk
