"""--responses-compatibility-mode: vLLM-only fields refused by name; streams carry only
event types the official SDK knows; heartbeats are SSE comments; rate-limit state in
headers only. Without the flag the extensions work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest

from tests.support.errors import assert_openai_error
from tests.support.events import EXTRA_TYPES, as_dict, check_stream
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.sse import parse_raw_sse
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.protocol.request import VLLM_EXTENSION_FIELDS, decode_create_request
from trio_responses.runtime.prepare import cache_salt

from .helpers import MODEL, http, stream_until

# One valid value per extension field; the test below fails if the list grows without it.
EXTENSION_VALUES: dict[str, Any] = {
    "request_id": "req-ext-1",
    "cache_salt": "salt-1",
    "priority": 3,
    "enable_response_messages": True,
    "ignore_eos": True,
    "top_k": 5,
    "min_p": 0.25,
    "repetition_penalty": 1.5,
    "seed": 1234,
    "stop": ["never-said"],
}
PING_INTERVAL = 0.05


@pytest.fixture(scope="module")
def compat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # 0.1 s between tokens: every reply has silences longer than the ping interval.
    engine = ScriptedEngine(model_name=MODEL, token_delay=0.1)
    with serve_scripted(tmp_path_factory, engine=engine, responses_compatibility_mode=True,
                        responses_ping_interval_seconds=PING_INTERVAL,
                        rate_limit_requests_per_minute=1000,
                        rate_limit_tokens_per_minute=1_000_000) as server:
        yield server


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Not compatible, with the extension events on (the server flags): ping events and
    rate-limit events."""
    with serve_scripted(tmp_path_factory, responses_ping_interval_seconds=PING_INTERVAL,
                        responses_ping_events=True, responses_rate_limit_events=True,
                        rate_limit_requests_per_minute=1000) as server:
        yield server


def test_the_value_table_covers_every_extension_field() -> None:
    assert set(EXTENSION_VALUES) == set(VLLM_EXTENSION_FIELDS)


@pytest.mark.parametrize("field", VLLM_EXTENSION_FIELDS)
def test_compat_mode_refuses_each_extension_by_name(compat: ServerThread, field: str) -> None:
    body = {"model": MODEL, "input": "hi", field: EXTENSION_VALUES[field]}
    submitted = compat.call(lambda: len(engine_of(compat).requests))
    with http(compat) as client:
        for path in ("/v1/responses", "/v1/responses/input_tokens"):
            error = assert_openai_error(client.post(path, json=body), 400, param=field,
                                        code="unknown_parameter")
            assert f"'{field}'" in error["message"]
        # The same request without the field is fine: the field alone was refused.
        del body[field]
        assert client.post("/v1/responses/input_tokens", json=body).status_code == 200
    assert compat.call(lambda: len(engine_of(compat).requests)) == submitted


def test_compat_mode_refusal_in_the_sdk(compat: ServerThread) -> None:
    with strict_sdk(compat) as client, pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="hi", extra_body={"top_k": 5})
    assert raised.value.param == "top_k"
    assert raised.value.code == "unknown_parameter"


def test_compat_mode_names_the_first_of_several(compat: ServerThread) -> None:
    body = {"model": MODEL, "input": "hi", "seed": 1, "cache_salt": "s"}
    with http(compat) as client:
        assert_openai_error(client.post("/v1/responses", json=body), 400, param="cache_salt")


def test_include_restricted_to_official_values(compat: ServerThread,
                                               extended: ServerThread) -> None:
    for server in (compat, extended):
        with http(server) as client:
            bad = client.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                     "include": ["vllm.secret"]})
            assert_openai_error(bad, 400, param="include[0]", code="invalid_value")


def test_extensions_accepted_without_the_flag(extended: ServerThread) -> None:
    body = {"model": MODEL, "input": "hi", "max_output_tokens": 8, **EXTENSION_VALUES}
    with http(extended) as client:
        response = client.post("/v1/responses", json=body,
                               headers={"x-request-id": EXTENSION_VALUES["request_id"]})
    assert response.status_code == 200, response.text
    reached = extended.call(lambda: engine_of(extended).requests[-1])
    sampling = reached.sampling
    assert (sampling.top_k, sampling.min_p, sampling.repetition_penalty, sampling.seed) \
        == (5, 0.25, 1.5, 1234)
    assert sampling.stop == ("never-said",)
    assert sampling.ignore_eos is True
    # The client's salt, within the key's own (an open server's: ""), never as given.
    assert reached.cache_salt == cache_salt("", decode_create_request(json.dumps(body).encode()))
    assert reached.cache_salt != "salt-1"
    assert reached.priority == 3
    # ignore_eos: the scripted engine repeats its reply up to max_output_tokens.
    assert response.json()["usage"]["output_tokens"] == 8


def test_enable_response_messages(extended: ServerThread) -> None:
    with strict_sdk(extended) as client:
        response = client.responses.create(model=MODEL, input="hello there",
                                           instructions="be brief",
                                           extra_body={"enable_response_messages": True})
        plain = client.responses.create(model=MODEL, input="hello there")
    extra = response.model_extra or {}
    assert extra["input_messages"] == [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "hello there"}]
    assert extra["output_messages"] == [{"role": "assistant",
                                         "content": "You said: hello there"}]
    assert "input_messages" not in (plain.model_extra or {})


class _Tee(httpx2.HTTPTransport):
    """A transport that keeps a copy of every response byte the SDK reads."""

    def __init__(self) -> None:
        super().__init__()
        self.captured = bytearray()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        original, captured = response.stream, self.captured

        class Copying(httpx2.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in original:  # type: ignore[union-attr]
                    captured.extend(chunk)
                    yield chunk

            def close(self) -> None:
                original.close()  # type: ignore[union-attr]

        response.stream = Copying()
        return response


def test_compat_stream_is_strict_sdk_clean(compat: ServerThread) -> None:
    tee = _Tee()
    with openai.DefaultHttpxClient(transport=tee) as transport_client, \
            strict_sdk(compat, http_client=transport_client) as client, \
            client.responses.stream(model=MODEL, input="one two three") as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    assert not {e["type"] for e in events} & EXTRA_TYPES
    assert final.output_text == "You said: one two three"
    # The bytes the strict SDK just read had heartbeats in them, as comments.
    wire_events, comments = parse_raw_sse(bytes(tee.captured))
    assert [e["type"] for e in wire_events] == [e["type"] for e in events]
    assert len(comments) >= 2 and set(comments) == {b": ping"}


def test_compat_stream_bytes_pings_are_comments(compat: ServerThread) -> None:
    with http(compat) as client:
        response = client.post("/v1/responses", json={"model": MODEL, "input": "a b c d",
                                                      "stream": True})
    assert response.status_code == 200
    # Rate-limit state travels in headers only.
    assert response.headers["x-ratelimit-limit-requests"] == "1000"
    assert response.headers["x-ratelimit-limit-tokens"] == "1000000"
    events, comments = parse_raw_sse(response.content)
    check_stream(events)
    assert not {e["type"] for e in events} & EXTRA_TYPES
    assert comments and set(comments) == {b": ping"}
    assert b"\nid:" not in response.content and not response.content.startswith(b"id:")
    assert b"retry:" not in response.content


def test_compat_heartbeat_while_the_engine_stalls(compat: ServerThread) -> None:
    raw = stream_until(compat, {"model": MODEL, "input": "wait [[stall]]"},
                       lambda raw: raw.count(b": ping\n\n") >= 3)
    _, _, after_first_delta = raw.partition(b"response.output_text.delta")
    assert after_first_delta, raw[-300:]
    tail = after_first_delta.split(b"\n\n", 1)[1]
    # After the first token the engine is silent: only comment frames, nothing else.
    assert [block for block in tail.split(b"\n\n") if block] == [b": ping"] * 3
    assert b"response.ping" not in raw


def test_compat_heartbeat_events_when_a_request_asks(compat: ServerThread) -> None:
    """The request header works in compatibility mode too: the client chose it."""
    raw = stream_until(compat, {"model": MODEL, "input": "wait [[stall]]"},
                       lambda raw: raw.count(b"event: response.ping\n") >= 2,
                       headers={"x-responses-ping-events": "true"})
    assert b": ping" not in raw


def test_compat_rate_limit_event_only_when_a_request_asks(compat: ServerThread) -> None:
    """Rate limits are on: compatibility mode sends no rate-limit event unless the
    request's header asks for it (the client chose it), the headers in both cases."""
    body = {"model": MODEL, "input": "x y", "stream": True}
    with http(compat) as client:
        plain = client.post("/v1/responses", json=body)
        asked = client.post("/v1/responses", json=body,
                            headers={"x-responses-rate-limit-events": "true"})
    assert "x-ratelimit-remaining-requests" in plain.headers
    assert b"response.rate_limits.updated" not in plain.content
    assert b"event: response.rate_limits.updated\n" in asked.content


def test_extension_events_without_the_flag(extended: ServerThread) -> None:
    """The contrast: outside compatibility mode the stream carries
    response.rate_limits.updated and response.ping (with --responses-rate-limit-events
    and --responses-ping-events),
    which the lenient SDK passes through and the strict SDK refuses (trap 2)."""
    raw = stream_until(extended, {"model": MODEL, "input": "wait [[stall]]"},
                       lambda raw: raw.count(b"event: response.ping\n") >= 2)
    assert b"event: response.rate_limits.updated\n" in raw
    assert b": ping" not in raw
    with strict_sdk(extended) as strict, pytest.raises(openai.APIResponseValidationError):
        for _ in strict.responses.create(model=MODEL, input="x [[stall]]", stream=True):
            pass
    with openai.OpenAI(base_url=extended.base_url + "/v1", api_key="x",
                       max_retries=0) as lenient:
        types = []
        for event in lenient.responses.create(model=MODEL, input="x [[stall]]", stream=True):
            types.append(str(event.type))
            if types[-1] == "response.ping":
                break
    assert types[:2] == ["response.created", "response.rate_limits.updated"]


def test_compat_stream_through_httpx_sse_reader(compat: ServerThread) -> None:
    """A generic SSE client (not the SDK) sees the same events and no pings."""
    from httpx_sse import connect_sse

    with httpx.Client(base_url=compat.base_url) as client, connect_sse(
            client, "POST", "/v1/responses",
            json={"model": MODEL, "input": "x y", "stream": True}) as source:
        events = [sse for sse in source.iter_sse() if sse.data != "[DONE]"]
    assert all(sse.event == sse.json()["type"] for sse in events)
    assert events[-1].event == "response.completed"
