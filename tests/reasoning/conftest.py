"""Fixtures for the reasoning tests: vLLM's ``qwen3`` reasoning parser over the default
model's tokenizer (``qwen3`` works with SmolLM2's vocabulary; ``deepseek_r1`` does not),
and a scripted-engine server that splits its ``<think>`` text with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.reasoning import ReasoningParsers
from trio_responses.engine.scripted import ScriptedEngine


@pytest.fixture(scope="session")
def qwen3(tokenizer: Any) -> ReasoningParsers:
    return ReasoningParsers("qwen3", tokenizer)


@pytest.fixture(scope="module")
def thinking_server(qwen3: ReasoningParsers,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    engine = ScriptedEngine(token_delay=0.002, model_name="scripted", reasoning=qwen3)
    with serve_scripted(tmp_path_factory, engine) as server:
        yield server


@pytest.fixture
def client(thinking_server: ServerThread) -> Iterator[openai.OpenAI]:
    with strict_sdk(thinking_server) as sdk:
        yield sdk
