"""Encrypted reasoning with the real engine (vLLM on the CPU, the default model) and
vLLM's qwen3 reasoning parser: a stateless multi-turn loop through the strict SDK,
``store: false`` and ``include: ["reasoning.encrypted_content"]``, each turn sending the
whole history back with the sealed reasoning items.

This module starts a server of its own (the session's ``real_engine`` has no reasoning
parser): Hypercorn's CLI in a subprocess, its engine in that process. Not a second
engine in the test process: vLLM's parallel state is global to a process, and stopping
one in-process engine tore it down under the session's (every later real-engine test
failed with "pipeline model parallel group is not initialized"). About 4 GB more while
it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.server.test_hypercorn_cli import HypercornCLI
from tests.support.sdk import strict_sdk
from trio_responses.runtime.sealing import new_key_line

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HypercornCLI]:
    pytest.importorskip("vllm")
    tmp: Path = tmp_path_factory.mktemp("thinking")
    (tmp / "sealing.keys").write_text(new_key_line() + "\n")
    process = HypercornCLI(tmp, {
        "TRIO_RESPONSES_STORE_PATH": str(tmp / "responses.sqlite3"),
        "TRIO_RESPONSES_VLLM_ARGS": ("--enforce-eager --max-model-len 2048 --seed 0 "
                                     "--reasoning-parser qwen3"),
        "TRIO_RESPONSES_SEALING_KEY_FILE": str(tmp / "sealing.keys"),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "OMP_NUM_THREADS": "1",
    })
    try:
        # Hypercorn's own start-up timeout (60 s) bounds the engine start too.
        yield process.start(timeout=120)
    finally:
        process.stop()


def test_a_stateless_loop_round_trips_sealed_reasoning(server: HypercornCLI) -> None:
    history: list[Any] = []
    with strict_sdk(server.base_url + "/v1", api_key="unused", timeout=300) as client:
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
