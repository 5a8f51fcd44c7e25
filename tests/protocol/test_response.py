"""The response object: the skeleton echoes the request and parses in the SDK's models and
in the Open Responses spec's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response

from tests.protocol.test_request import BASE, EVERY_FIELD
from tests.support.open_responses import spec_response
from trio_responses.protocol.request import decode_create_request
from trio_responses.protocol.response import new_response, usage


def skeleton(body: dict[str, Any], tier: str = "default",
             sampling_defaults: dict[str, float] | None = None) -> dict[str, Any]:
    request = decode_create_request(json.dumps(body).encode())
    return new_response(request, response_id="resp_1", created_at=1700000000.75,
                        model="served", service_tier=tier, sampling_defaults=sampling_defaults)


@pytest.mark.parametrize("body", [BASE, EVERY_FIELD], ids=["minimal", "every-field"])
def test_skeleton_parses_in_the_sdk_and_the_spec(body: dict[str, Any]) -> None:
    response = skeleton(body)
    parsed = Response.model_validate(response)
    assert parsed.id == "resp_1" and parsed.model == "served"
    spec_response(response)
    finished = dict(response, status="completed", completed_at=1700000001,
                    usage=usage(input_tokens=1, output_tokens=2))
    Response.model_validate(finished)
    spec_response(finished)


def test_created_at_is_whole_seconds() -> None:
    assert skeleton(BASE)["created_at"] == 1700000000
    assert type(skeleton(BASE)["created_at"]) is int


def test_sampling_is_the_requests_else_the_models_else_the_apis() -> None:
    model = {"temperature": 0.2, "top_p": 0.9, "presence_penalty": 0.5, "top_k": 40.0}
    response = skeleton(BASE, sampling_defaults=model)
    assert (response["temperature"], response["top_p"]) == (0.2, 0.9)
    assert (response["presence_penalty"], response["frequency_penalty"]) == (0.5, 0.0)
    assert "top_k" not in response
    given = skeleton({**BASE, "temperature": 0.0, "top_p": 1.0}, sampling_defaults=model)
    assert (given["temperature"], given["top_p"]) == (0.0, 1.0)
    plain = skeleton(BASE)
    assert [plain[k] for k in ("temperature", "top_p", "presence_penalty",
                               "frequency_penalty")] == [1.0, 1.0, 0.0, 0.0]


def test_json_schema_format_has_what_the_spec_requires() -> None:
    fmt = {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}
    response = skeleton({**BASE, "text": {"format": fmt}})
    assert response["text"]["format"] == {**fmt, "description": "", "strict": False}
    spec_response(response)


def test_skeleton_echoes_the_request() -> None:
    response = skeleton(EVERY_FIELD, tier="flex")
    for name in ("instructions", "previous_response_id", "max_output_tokens", "max_tool_calls",
                 "metadata", "parallel_tool_calls", "prompt_cache_key",
                 "prompt_cache_retention", "safety_identifier", "temperature", "top_p",
                 "top_logprobs", "truncation", "user", "tool_choice"):
        assert response[name] == EVERY_FIELD[name], name
    assert response["status"] == "queued" and response["background"] is True
    assert response["service_tier"] == "flex" and response["store"] is True
    assert response["text"] == EVERY_FIELD["text"]
    assert response["reasoning"] == {"effort": "low", "summary": "auto"}
    (tool,) = response["tools"]
    assert tool == {**EVERY_FIELD["tools"][0]}


def test_skeleton_defaults() -> None:
    response = skeleton(BASE)
    assert response["status"] == "in_progress" and response["background"] is False
    assert (response["temperature"], response["top_p"], response["top_logprobs"]) == (1.0, 1.0, 0)
    assert response["tool_choice"] == "auto" and response["tools"] == []
    assert response["truncation"] == "disabled" and response["parallel_tool_calls"] is True
    assert response["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert response["store"] is True and response["metadata"] == {}
    assert response["output"] == [] and response["usage"] is None
    assert skeleton({**BASE, "store": False})["store"] is False


@pytest.mark.parametrize("conversation", ["conv_1", {"id": "conv_1"}])
def test_skeleton_names_its_conversation(conversation: Any) -> None:
    response = skeleton({**BASE, "conversation": conversation})
    assert response["conversation"] == {"id": "conv_1"}
    assert Response.model_validate(response).conversation is not None
    assert "conversation" not in skeleton(BASE)


def test_usage_block() -> None:
    block = usage(input_tokens=10, output_tokens=4, cached_tokens=6, reasoning_tokens=1)
    assert block == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 14,
    }
