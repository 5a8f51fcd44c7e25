"""The vLLM bridge over the real engine and the default model (one engine per session).

Each test body runs in the engine's own Trio run (``real_engine.run``), so timing checks
(abort within a step) see the engine as the server would.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import trio

from tests.engine.harness import EngineLoop
from trio_responses import errors
from trio_responses.engine.base import EngineDelta, EngineRequest, SamplingOptions

pytestmark = pytest.mark.engine

FRANCE = ({"role": "user", "content": "What is the capital of France?"},)


def request(messages: tuple[dict[str, Any], ...] = FRANCE, **sampling: Any) -> EngineRequest:
    extra = {k: sampling.pop(k) for k in ("cache_salt", "priority", "truncate") if k in sampling}
    sampling.setdefault("max_tokens", 40)
    sampling.setdefault("temperature", 0.0)
    return EngineRequest(
        request_id=f"test-{uuid.uuid4().hex[:8]}",
        messages=messages,
        sampling=SamplingOptions(**sampling),
        **extra,
    )


async def collect(engine: Any, req: EngineRequest) -> list[EngineDelta]:
    stream = await engine.submit(req)
    try:
        return [delta async for delta in stream]
    finally:
        await stream.aclose()


def text_of(deltas: list[EngineDelta]) -> str:
    return "".join(delta.text for delta in deltas)


def test_capital_of_france(real_engine: EngineLoop) -> None:
    deltas = real_engine.run(collect, real_engine.engine, request())
    assert "Paris" in text_of(deltas)
    assert deltas[-1].finish_reason == "stop"
    assert all(delta.finish_reason is None for delta in deltas[:-1])


def test_deltas_join_and_counts_add_up(real_engine: EngineLoop) -> None:
    req = request(top_logprobs=0, max_tokens=30)

    async def scenario() -> tuple[int, list[EngineDelta]]:
        counted = await real_engine.engine.count_tokens(req)
        return counted, await collect(real_engine.engine, req)

    counted, deltas = real_engine.run(scenario)
    final = deltas[-1]
    assert final.prompt_tokens == counted > 0
    outputs = [delta.output_tokens for delta in deltas]
    assert outputs == sorted(outputs)
    logprobs = [lp for delta in deltas for lp in delta.logprobs]
    # One logprob per generated token, except the EOS token that ended it.
    expected = final.output_tokens - (1 if final.finish_reason == "stop" else 0)
    assert len(logprobs) == expected
    assert "".join(lp.token for lp in logprobs) == text_of(deltas)
    assert all(lp.logprob <= 0 and lp.top == () for lp in logprobs)


def test_top_logprobs(real_engine: EngineLoop) -> None:
    deltas = real_engine.run(collect, real_engine.engine, request(top_logprobs=3, max_tokens=8))
    logprobs = [lp for delta in deltas for lp in delta.logprobs]
    assert logprobs
    for lp in logprobs:
        assert len(lp.top) == 3
        assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)
        assert lp.bytes == tuple(lp.token.encode())
    # Greedy: the chosen token is the best one.
    assert all(lp.token == lp.top[0].token for lp in logprobs)


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_json_schema_output_validates(real_engine: EngineLoop) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    messages = ({"role": "user", "content": "Describe a person called Ada, aged 36, in JSON."},)
    req = request(messages, json_schema=PERSON, max_tokens=60)
    deltas = real_engine.run(collect, real_engine.engine, req)
    assert deltas[-1].finish_reason == "stop"
    value = json.loads(text_of(deltas))
    jsonschema.validate(value, PERSON)


def test_json_object_output_is_json(real_engine: EngineLoop) -> None:
    messages = (
        {
            "role": "user",
            "content": 'Answer in JSON like {"capital": "..."}: what is the capital of France?',
        },
    )
    deltas = real_engine.run(
        collect, real_engine.engine, request(messages, json_object=True, max_tokens=40)
    )
    text = text_of(deltas)
    # The grammar holds the text to a JSON object; a small model may not close it in time.
    assert text.lstrip().startswith("{")
    if deltas[-1].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_max_tokens_ends_with_length(real_engine: EngineLoop) -> None:
    deltas = real_engine.run(collect, real_engine.engine, request(max_tokens=5, ignore_eos=True))
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].output_tokens == 5


def test_stop_string(real_engine: EngineLoop) -> None:
    deltas = real_engine.run(collect, real_engine.engine, request(stop=("Paris",)))
    assert deltas[-1].finish_reason == "stop"
    assert "Paris" not in text_of(deltas)


def test_abort_mid_stream_leaves_nothing_running(real_engine: EngineLoop) -> None:
    engine = real_engine.engine

    async def scenario() -> int:
        before = engine.statistics().aborted_total
        stream = await engine.submit(request(max_tokens=500, ignore_eos=True, temperature=1.0))
        seen = 0
        async for _delta in stream:
            seen += 1
            if seen == 3:
                break
        assert engine.statistics().running == 1
        await stream.aclose()
        await stream.aclose()  # idempotent
        steps_at_abort = engine.statistics().extra["steps"]
        # Polled, as a metrics scraper would see it (every 5 ms; 10 s at most, for a
        # loaded machine: the bound that matters is counted in engine steps below).
        for _ in range(2000):
            if not engine.statistics().running:
                break
            await trio.sleep(0.005)
        assert engine.statistics().running == 0
        assert engine.statistics().aborted_total == before + 1
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        return engine.statistics().extra["steps"] - steps_at_abort

    # The step that was running when the abort came, then the engine thread's report
    # that nothing is left: the abort acted within one step.
    assert real_engine.run(scenario) <= 2


def test_prefix_cache_follows_cache_salt(real_engine: EngineLoop) -> None:
    # Several hundred tokens: the CPU's KV block is 128 tokens, and only full blocks are
    # cached.
    story = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(50))
    messages = ({"role": "user", "content": story + "\nSummarize."},)
    salt, other = uuid.uuid4().hex, uuid.uuid4().hex

    async def scenario() -> list[EngineDelta]:
        finals = []
        for cache_salt in (salt, salt, other):
            req = request(messages, max_tokens=2, cache_salt=cache_salt)
            finals.append((await collect(real_engine.engine, req))[-1])
        return finals

    first, second, third = real_engine.run(scenario)
    assert first.prompt_tokens > 500
    assert first.cached_tokens == 0
    assert second.cached_tokens > 0
    assert third.cached_tokens == 0


def test_context_length(real_engine: EngineLoop) -> None:
    engine = real_engine.engine
    huge = "word " * 3000  # far over max_model_len 2048
    history = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": huge},
        {"role": "assistant", "content": "That is long."},
        {"role": "user", "content": "What is the capital of France?"},
    )

    async def scenario() -> list[EngineDelta]:
        with pytest.raises(errors.ContextLengthExceeded) as caught:
            await engine.submit(request(history))
        assert caught.value.param == "input"
        with pytest.raises(errors.ContextLengthExceeded):
            await engine.submit(request(({"role": "user", "content": huge},), truncate=True))
        return await collect(engine, request(history, truncate=True, max_tokens=30))

    deltas = real_engine.run(scenario)
    assert deltas[-1].prompt_tokens < 100
    assert "Paris" in text_of(deltas)


def test_max_tokens_clipped_to_context(real_engine: EngineLoop) -> None:
    engine = real_engine.engine

    async def scenario() -> tuple[int, list[EngineDelta]]:
        # A prompt that leaves a few tokens of room in the context of 2048.
        words = 1950
        for _ in range(3):
            req = request(
                ({"role": "user", "content": "word " * words},), max_tokens=1000, ignore_eos=True
            )
            counted = await engine.count_tokens(req)
            words += 2040 - counted
        return counted, await collect(engine, req)

    counted, deltas = real_engine.run(scenario)
    assert 2030 < counted < 2048
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].output_tokens == 2048 - counted


def test_concurrent_requests_share_steps(real_engine: EngineLoop) -> None:
    engine = real_engine.engine

    async def scenario() -> tuple[list[int], int]:
        steps_before = engine.statistics().extra["steps"]
        results: list[int] = []

        async def one(priority: int) -> None:
            req = request(max_tokens=8, ignore_eos=True, priority=priority)
            results.append((await collect(engine, req))[-1].output_tokens)

        async with trio.open_nursery() as nursery:
            for priority in range(4):
                nursery.start_soon(one, priority)
        return results, engine.statistics().extra["steps"] - steps_before

    results, steps = real_engine.run(scenario)
    assert results == [8, 8, 8, 8]
    # Batched: far fewer engine steps (and cross-thread posts) than 32 tokens.
    assert steps < 20


def test_statistics_when_idle(real_engine: EngineLoop) -> None:
    stats = real_engine.call(real_engine.engine.statistics)
    assert stats.healthy
    assert stats.running == 0
    assert stats.submitted_total >= stats.aborted_total


async def test_proxy_serves_another_trio_run(real_engine: EngineLoop) -> None:
    # What a server test in its own Trio run sees: the shared engine through the proxy.
    proxy = real_engine.proxy()
    await proxy.start()
    req = request(max_tokens=20)
    stream = await proxy.submit(req)
    try:
        deltas = [delta async for delta in stream]
    finally:
        await stream.aclose()
    assert "Paris" in text_of(deltas)
    assert deltas[-1].prompt_tokens == await proxy.count_tokens(req)
    await proxy.aclose()
    assert proxy.statistics().healthy  # the shared engine stays up
    assert proxy.model_name == "SmolLM2-135M-Instruct"


def test_the_model_cards_sampling_is_the_default(real_engine: EngineLoop) -> None:
    """The default model's folder carries its card's sampling (generation_config.json):
    the bridge applies it to a request that leaves temperature and top_p unset, and a
    request's own values win."""
    assert real_engine.engine.sampling_defaults == {"temperature": 0.2, "top_p": 0.9,
                                                    "max_tokens": 512}
    loaded: Any = real_engine.engine._loaded  # type: ignore[attr-defined]
    unset = loaded.make_params(SamplingOptions(max_tokens=8), 8, False)
    assert (unset.temperature, unset.top_p) == (0.2, 0.9)
    given = loaded.make_params(SamplingOptions(max_tokens=8, temperature=0.0, top_p=1.0), 8,
                               False)
    assert (given.temperature, given.top_p) == (0.0, 1.0)
