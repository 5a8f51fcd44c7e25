"""Prompt rendering, truncation, sampling and logprob conversion (no vLLM needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.engine.fakes import FakeTokenizer
from trio_responses import errors
from trio_responses.engine.base import EngineRequest, SamplingOptions
from trio_responses.engine.vllm import prompt


def renderer(max_model_len: int = 100) -> prompt.PromptRenderer:
    return prompt.PromptRenderer(FakeTokenizer(), max_model_len=max_model_len)


def request(
    *messages: dict[str, Any], max_tokens: int = 10, truncate: bool = False,
    reasoning_effort: str | None = None,
) -> EngineRequest:
    return EngineRequest("r", messages or ({"role": "user", "content": "hi"},),
                         SamplingOptions(max_tokens=max_tokens), truncate=truncate,
                         reasoning_effort=reasoning_effort)


def test_template_messages_flatten_text_parts() -> None:
    out = prompt.template_messages(
        [
            {"role": "developer", "content": "rules"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_text", "text": "b"},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
        ]
    )
    assert out == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "", "tool_calls": []},
    ]


def test_non_text_content_is_refused() -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        prompt.template_messages([{"role": "user", "content": [{"type": "input_image"}]}])
    assert caught.value.param == "input"


def test_no_chat_template_is_refused_at_start() -> None:
    class Bare(FakeTokenizer):
        chat_template = None

    with pytest.raises(ValueError, match="--chat-template"):
        prompt.PromptRenderer(Bare(), max_model_len=10)


def test_max_tokens_is_clipped_to_the_room_left() -> None:
    prepared = renderer(20).prepare(request({"role": "user", "content": "a b c"}, max_tokens=99))
    # "<user> a b c <assistant>" is 5 tokens.
    assert len(prepared.token_ids) == 5
    assert prepared.max_tokens == 15


def test_prompt_filling_the_context_is_refused() -> None:
    with pytest.raises(errors.ContextLengthExceeded) as caught:
        renderer(5).prepare(request({"role": "user", "content": "a b c"}))
    assert caught.value.param == "input"
    assert caught.value.code == "context_length_exceeded"


def test_truncation_drops_oldest_history_and_keeps_the_last_turn() -> None:
    req = request(
        {"role": "system", "content": "s"},
        {"role": "user", "content": "old " * 10},
        {"role": "assistant", "content": "reply " * 10},
        {"role": "user", "content": "mid"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "last question"},
        truncate=True,
    )
    r = renderer(20)
    prepared = r.prepare(req)
    assert prepared.dropped_messages == 2
    kept = r.render([req.messages[i] for i in (0, 3, 4, 5)])
    assert prepared.token_ids == kept
    assert r.count(req) == len(kept)
    assert r.count(request(*req.messages)) > 20  # without truncation: the full length


def test_truncation_drops_tool_results_of_dropped_calls() -> None:
    messages = (
        {"role": "user", "content": "x " * 30},
        {"role": "assistant", "content": "calling"},
        {"role": "tool", "content": "result " * 3, "tool_call_id": "c"},
        {"role": "user", "content": "now"},
    )
    # Dropping the first message leaves 10 tokens, over the limit; dropping the call too
    # would leave its result first, so that goes as well.
    r = renderer(8)
    prepared = r.prepare(request(*messages, truncate=True))
    assert prepared.token_ids == r.render([messages[3]])


def test_truncation_cannot_drop_the_last_user_message() -> None:
    req = request(
        {"role": "system", "content": "s"}, {"role": "user", "content": "x " * 50}, truncate=True
    )
    with pytest.raises(errors.ContextLengthExceeded):
        renderer(20).prepare(req)


@dataclass
class Logprob:
    logprob: float
    rank: int | None
    decoded_token: str | None


def test_convert_logprobs_orders_the_top_by_rank() -> None:
    positions = [
        {5: Logprob(-1.5, 3, "é"), 6: Logprob(-0.1, 1, "a"), 7: Logprob(-0.9, 2, "b")},
        {8: Logprob(float("-inf"), 9, "z"), 6: Logprob(-0.2, 1, "a")},
    ]
    out = prompt.convert_logprobs([5, 8], positions, top_n=2)
    assert [lp.token for lp in out] == ["é", "z"]
    assert out[0].bytes == (0xC3, 0xA9)
    assert [t.token for t in out[0].top] == ["a", "b"]
    assert out[1].logprob == -9999.0  # JSON has no -inf
    assert prompt.convert_logprobs([5], positions[:1], top_n=0)[0].top == ()
    assert prompt.convert_logprobs([5], None, top_n=0) == ()


def test_finish_reasons() -> None:
    assert prompt.finish_reason(None) is None
    assert prompt.finish_reason("length") == "length"
    assert prompt.finish_reason("stop") == "stop"
    with pytest.raises(ValueError):
        prompt.finish_reason("abort")


def test_sampling_params_map_every_option() -> None:
    pytest.importorskip("vllm")
    from vllm.sampling_params import RequestOutputKind

    options = SamplingOptions(
        max_tokens=1,
        temperature=0.5,
        top_p=0.9,
        top_logprobs=3,
        top_k=7,
        min_p=0.1,
        repetition_penalty=1.1,
        seed=4,
        stop=("x",),
        ignore_eos=True,
        json_schema={"type": "object"},
    )
    params = prompt.sampling_params(options, 12, {"temperature": 0.7, "presence_penalty": 0.3})
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k) == (12, 0.5, 0.9, 7)
    assert (params.min_p, params.repetition_penalty, params.seed) == (0.1, 1.1, 4)
    assert (params.stop, params.ignore_eos, params.logprobs) == (["x"], True, 3)
    assert params.presence_penalty == 0.3
    assert params.output_kind == RequestOutputKind.DELTA
    assert params.structured_outputs.json == {"type": "object"}
    assert params.structured_outputs.disable_any_whitespace
    with pytest.raises(errors.InvalidRequest):
        prompt.sampling_params(SamplingOptions(max_tokens=1, top_p=7.0), 1, {})


def test_model_sampling_defaults_are_what_a_request_gets() -> None:
    """Of vLLM's view of a generation config: what sampling_params applies, and
    max_new_tokens (vLLM calls it max_tokens) as the default output limit."""
    generation = {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_tokens": 512,
                  "min_p": None}
    assert prompt.model_sampling_defaults(generation) == {
        "temperature": 0.2, "top_p": 0.9, "top_k": 40.0, "max_tokens": 512.0}
    assert prompt.model_sampling_defaults({}) == {}



def test_template_lists_tools_tells_templates_with_tool_support_apart(tokenizer: Any) -> None:
    # SmolLM2's template ignores tools; a template that writes them out is told apart.
    listing = "{% for m in messages %}{{ m.content }}{% endfor %}{{ tools | tojson }}"
    assert not prompt.PromptRenderer(tokenizer, max_model_len=100).template_lists_tools
    assert prompt.PromptRenderer(tokenizer, max_model_len=100,
                                 chat_template=listing).template_lists_tools


@pytest.mark.parametrize(("effort", "rendered"), [
    (None, "||"), ("none", "none|False|"), ("high", "high|True|")])
def test_reasoning_effort_reaches_the_template(tokenizer: Any, effort: str | None,
                                               rendered: str) -> None:
    template = ("{{ reasoning_effort or '' }}|{{ enable_thinking if enable_thinking is "
                "defined else '' }}|")
    renderer = prompt.PromptRenderer(tokenizer, max_model_len=100, chat_template=template)
    ids = renderer.prepare(request(reasoning_effort=effort)).token_ids
    assert tokenizer.decode(ids) == rendered
