"""Encrypted reasoning with the real engine (vLLM on the CPU, the default model) and
vLLM's qwen3 reasoning parser: a stateless multi-turn loop through the strict SDK,
``store: false`` and ``include: ["reasoning.encrypted_content"]``, each turn sending the
whole history back with the sealed reasoning items.

This module starts an engine of its own (the session's ``real_engine`` has no reasoning
parser), stopped when the module ends: about 4 GB more while both are up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.engine.harness import REAL_ENGINE_FLAGS, EngineLoop
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.base import Engine

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"


def _thinking_engine() -> Engine:
    from trio_responses.engine.vllm.args import build_vllm_engine

    return build_vllm_engine(None, (*REAL_ENGINE_FLAGS, "--reasoning-parser", "qwen3"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    pytest.importorskip("vllm")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    keys = tmp_path_factory.mktemp("keys") / "sealing.keys"
    loop = EngineLoop(_thinking_engine).start()
    try:
        # No --sealing-key-file: the key file is made in the cache folder.
        settings = Settings(port=0, responses_ping_interval_seconds=0,
                            shutdown_grace_seconds=5, cache_dir=str(keys.parent))
        with ServerThread(settings, engine=loop.proxy()) as running:
            yield running
    finally:
        loop.close()


def test_a_stateless_loop_round_trips_sealed_reasoning(server: ServerThread) -> None:
    history: list[Any] = []
    with strict_sdk(server, api_key="unused", timeout=300) as client:
        for turn, question in enumerate(("What is the capital of France?", "And of Italy?")):
            history.append({"role": "user", "content": question})
            response = client.responses.create(
                model=MODEL, input=history, store=False,
                include=["reasoning.encrypted_content"], temperature=0,
                max_output_tokens=24, extra_body={"enable_response_messages": True})
            assert response.status == "completed"
            if turn == 0:
                # SmolLM2 never writes </think>: qwen3's parser takes it all as reasoning.
                [reasoning] = response.output
                assert reasoning.type == "reasoning" and reasoning.encrypted_content
                assert "Paris" in reasoning.content[0].text  # type: ignore[index]
            for item in response.output:
                assert item.type != "reasoning" or item.encrypted_content
            history += [item.model_dump(exclude_none=True) for item in response.output]
        # The second turn's prompt (vLLM's enable_response_messages shows it) has the
        # first turn's reasoning, opened from its sealed value.
        prompt = (response.model_extra or {})["input_messages"]
        assert prompt[1] == {"role": "assistant", "content": "",
                             "reasoning_content": history[1]["content"][0]["text"]}
        with pytest.raises(openai.BadRequestError) as spoiled:
            sealed = dict(history[1], encrypted_content=history[1]["encrypted_content"][:-4])
            client.responses.create(model=MODEL, input=[history[0], sealed], store=False)
        assert spoiled.value.code == "invalid_encrypted_content"
    assert (server.app_state.settings.cache_folder() / "sealing.keys").exists()
