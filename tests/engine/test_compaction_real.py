"""Compaction with the real engine (vLLM on the CPU, the default model), through the
strict SDK: a short conversation about a country, compacted by the model; the question
that needs the topic, asked after the compaction item alone, is still answered."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.engine.harness import EngineLoop
from tests.support.events import as_dict, check_stream
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread
from trio_responses import Settings

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"
QUESTION = "What is the capital of the country we are talking about?"


@pytest.fixture(scope="module")
def client(real_engine: EngineLoop) -> Iterator[openai.OpenAI]:
    settings = Settings(port=0, responses_ping_interval_seconds=0, shutdown_grace_seconds=5)
    with ServerThread(settings, engine=real_engine.proxy()) as server, \
            strict_sdk(server, api_key="unused", timeout=300) as sdk:
        yield sdk


def test_a_compacted_conversation_still_answers(client: openai.OpenAI) -> None:
    history: list[Any] = []
    for text in ("Let's talk about France.", "Tell me about its food."):
        history.append({"role": "user", "content": text})
        reply = client.responses.create(model=MODEL, store=False, temperature=0,
                                        max_output_tokens=80, input=history)
        history += [item.model_dump(exclude_none=True) for item in reply.output]
    compacted = client.responses.compact(model=MODEL, input=history)
    [item] = compacted.output
    assert item.type == "compaction" and compacted.usage.output_tokens > 0
    carried = item.model_dump(exclude_none=True)
    answer = client.responses.create(model=MODEL, store=False, temperature=0,
                                     max_output_tokens=30,
                                     input=[carried, {"role": "user", "content": QUESTION}])
    whole = client.responses.create(model=MODEL, store=False, temperature=0,
                                    max_output_tokens=30,
                                    input=[*history, {"role": "user", "content": QUESTION}])
    assert answer.usage is not None and whole.usage is not None
    assert answer.usage.input_tokens < whole.usage.input_tokens
    assert "Paris" in answer.output_text, answer.output_text


def test_context_management_compacts_with_the_real_model(client: openai.OpenAI) -> None:
    long_history = [{"role": "user", "content": f"Fact {i}: the lighthouse has {i} lamps."}
                    for i in range(20)]
    with client.responses.stream(
            model=MODEL, temperature=0, max_output_tokens=20,
            input=[*long_history, {"role": "user", "content": "How many lamps at most?"}],
            context_management=[{"type": "compaction", "compact_threshold": 100}]) as stream:
        events = [as_dict(event) for event in stream]
    check_stream(events)
    final = events[-1]["response"]
    assert final["output"][0]["type"] == "compaction"
    assert "response.compaction.compacting" in [event["type"] for event in events]
