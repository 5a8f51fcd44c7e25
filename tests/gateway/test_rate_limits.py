"""Rate limits per API key over real HTTP: x-ratelimit-* headers, 429 with Retry-After
and retry-after-ms, x-should-retry: false where waiting cannot help, the stream event,
another key unaffected, the openai SDK's own retry, the effective output budget charged
up front (and the unused part given back), and reads counted as requests."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator

import httpx
import httpx2
import openai
import pytest
from httpx_sse import EventSource

from tests.support.errors import assert_openai_error
from tests.support.events import check_stream
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from tests.support.sse import read_sse
from trio_responses.engine.scripted import ScriptedEngine

from .helpers import MODEL, http

RPM = 60  # one request a second after a burst of 60
TPM = 1000
KEYS = ("fresh", "burst", "bystander", "tokens", "tokens-bystander", "huge", "stream",
        "retry", "refund", "default-budget", "reader", "no-event", "bad-header", "compact",
        "compact-held", "compact-create", "plain-create")
CONTEXT = 1000  # the scripted model's context, in words
# max_output_tokens of the requests here unless a test says otherwise: a request without
# one is charged the effective default (the whole context here, TPM's worth).
OUTPUT = 16
DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+s)$")
HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
           "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
           "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    engine = ScriptedEngine(model_name=MODEL, max_model_len=CONTEXT)
    with serve_scripted(tmp_path_factory, engine=engine, api_keys=KEYS,
                        rate_limit_requests_per_minute=RPM,
                        rate_limit_tokens_per_minute=TPM) as server:
        yield server


def seconds(duration: str) -> float:
    """A reset header back in seconds (``1m0s`` → 60)."""
    if duration.endswith("ms"):
        return int(duration[:-2]) / 1000
    total = 0
    for value, unit in re.findall(r"(\d+)([hms])", duration):
        total += int(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def create(client: httpx.Client, headers: dict[str, str] | None = None,
           **fields: object) -> httpx.Response:
    body = {"model": MODEL, "input": "hi", "max_output_tokens": OUTPUT, **fields}
    return client.post("/v1/responses", json={k: v for k, v in body.items() if v is not None},
                       headers=headers)


def drain_requests(client: httpx.Client) -> httpx.Response:
    """Spend the key's requests until the server says 429; that response."""
    for _ in range(RPM + 10):
        response = create(client)
        if response.status_code == 429:
            return response
        assert response.status_code == 200, response.text
    raise AssertionError("no 429 after the whole burst")


def test_every_v1_response_carries_the_headers(server: ServerThread) -> None:
    with http(server, "fresh") as client:
        first = create(client)
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-requests"] == str(RPM)
        assert first.headers["x-ratelimit-remaining-requests"] == str(RPM - 1)
        assert first.headers["x-ratelimit-limit-tokens"] == str(TPM)
        # "hi" is estimated at one token (four characters a token, rounded up), and the
        # output at its budget, max_output_tokens.
        assert first.headers["x-ratelimit-remaining-tokens"] == str(TPM - 1 - OUTPUT)
        # One request of 60 a minute is back in a second; 17 tokens of 1000 in 1.02 s.
        assert 0.9 < seconds(first.headers["x-ratelimit-reset-requests"]) <= 1
        assert first.headers["x-ratelimit-reset-tokens"] == "2s"
        second = create(client)
        # (One more if a second passed in between: the bucket refills continuously.)
        assert int(second.headers["x-ratelimit-remaining-requests"]) in (RPM - 2, RPM - 1)
        for response in (client.get("/v1/models"), client.get("/v1/responses/resp_nope"),
                         create(client, input=None)):
            for name in HEADERS:
                assert name in response.headers, (response.request.url, name)
            assert DURATION.match(response.headers["x-ratelimit-reset-requests"])
            assert DURATION.match(response.headers["x-ratelimit-reset-tokens"])
        assert "x-ratelimit-limit-requests" not in client.get("/health").headers
    # A request whose key did not check out is nobody's: no one's limits are shown.
    with http(server, "not-a-key") as stranger:
        refused = create(stranger)
    assert refused.status_code == 401
    assert not [name for name in refused.headers if name.startswith("x-ratelimit")]


def test_requests_per_minute_429_and_a_bystander(server: ServerThread) -> None:
    with http(server, "burst") as client:
        refused = drain_requests(client)
    error = assert_openai_error(refused, 429, code="rate_limit_exceeded", type="requests")
    assert "requests per minute" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert 0 < int(refused.headers["retry-after-ms"]) <= 1000
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in refused.headers
    with http(server, "bystander") as other:
        fine = create(other)
    assert fine.status_code == 200
    assert fine.headers["x-ratelimit-remaining-requests"] == str(RPM - 1)


def test_tokens_per_minute_429_while_tokens_are_held(server: ServerThread) -> None:
    with http(server, "tokens") as client:
        # A running response holds its estimate (prompt + max_output_tokens) until it ends.
        with client.stream("POST", "/v1/responses", json={
                "model": MODEL, "input": "[[stall]]", "stream": True,
                "max_output_tokens": 900}) as held:
            assert held.status_code == 200
            remaining = int(held.headers["x-ratelimit-remaining-tokens"])
            assert 90 <= remaining < 100
            refused = create(client, max_output_tokens=200)
            error = assert_openai_error(refused, 429, code="rate_limit_exceeded",
                                        type="tokens")
            assert "tokens per minute" in error["message"]
            wait_ms = int(refused.headers["retry-after-ms"])
            # About 100 tokens missing at 1000 a minute: about 6 s (less the refill since).
            assert 2000 < wait_ms < 8000
            assert int(refused.headers["retry-after"]) == math.ceil(wait_ms / 1000)
            with http(server, "tokens-bystander") as other:
                assert create(other, max_output_tokens=900).status_code == 200
        # The client left: the run ends and the unused estimate is given back.
        deadline = time.monotonic() + 5
        while create(client, max_output_tokens=200).status_code == 429:
            assert time.monotonic() < deadline, "the held tokens never came back"
            time.sleep(0.02)


def test_more_than_the_limit_says_do_not_retry(server: ServerThread,
                                               caplog: pytest.LogCaptureFixture) -> None:
    # Estimated at more tokens than a minute holds (a request's output is bounded by the
    # context, which is TPM's size here, so it is the prompt that does not fit).
    huge = "x" * (4 * TPM)
    with http(server, "huge") as client:
        refused = create(client, input=huge)
    error = assert_openai_error(refused, 429, code="rate_limit_exceeded", type="tokens")
    assert str(TPM) in error["message"]
    assert refused.headers["x-should-retry"] == "false"
    assert "retry-after" not in refused.headers
    # The SDK obeys: no retry even with retries allowed.
    with caplog.at_level(logging.INFO, logger="openai"), \
            strict_sdk(server, api_key="huge", max_retries=2) as client, \
            pytest.raises(openai.RateLimitError):
        client.responses.create(model=MODEL, input=huge, max_output_tokens=OUTPUT)
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]


def test_a_request_the_engine_refuses_gives_its_tokens_back(server: ServerThread) -> None:
    # Within the token limit (~525 tokens estimated, and 100 out), beyond the context.
    too_long = "a " * (CONTEXT + 50)
    with http(server, "refund") as client:
        refused = create(client, input=too_long, max_output_tokens=100)
        assert_openai_error(refused, 400, param="input", code="context_length_exceeded")
        after = create(client)
    assert after.status_code == 200
    # Only this last request's own estimate is missing from the bucket.
    assert after.headers["x-ratelimit-remaining-tokens"] == str(TPM - 1 - OUTPUT)
    assert int(after.headers["x-ratelimit-remaining-requests"]) in (RPM - 2, RPM - 1)


def test_stream_has_no_rate_limit_event_unless_asked(server: ServerThread) -> None:
    """Off by default (the TypeScript SDK's stream helper throws on it); the headers
    carry the figures all the same."""
    with http(server, "no-event") as client:
        response = create(client, stream=True, max_output_tokens=8)
        declined = create(client, stream=True, max_output_tokens=8,
                          headers={"x-responses-rate-limit-events": "false"})
    for answer in (response, declined):
        events = read_sse(EventSource(answer))
        check_stream(events)
        assert [e["type"] for e in events[:2]] == ["response.created",
                                                   "response.in_progress"]
        assert "response.rate_limits.updated" not in [e["type"] for e in events]
        assert int(answer.headers["x-ratelimit-remaining-requests"]) < RPM


def test_a_bad_rate_limit_events_header_is_a_400(server: ServerThread) -> None:
    with http(server, "bad-header") as client:
        refused = create(client, stream=True, headers={"x-responses-rate-limit-events": "yes"})
    assert_openai_error(refused, 400, code="invalid_value")
    assert "X-Responses-Rate-Limit-Events" in refused.json()["error"]["message"]


def test_stream_carries_the_rate_limit_event_when_asked(server: ServerThread) -> None:
    with http(server, "stream") as client:
        # 9 tokens in all: a reset under a second, which headers write to the millisecond.
        response = create(client, stream=True, max_output_tokens=8,
                          headers={"x-responses-rate-limit-events": "true"})
    events = read_sse(EventSource(response))
    check_stream(events)
    assert [e["type"] for e in events[:3]] == [
        "response.created", "response.rate_limits.updated", "response.in_progress"]
    assert events[1]["sequence_number"] == 1
    limits = {item["name"]: item for item in events[1]["rate_limits"]}
    assert set(limits) == {"requests", "tokens"}
    for name in ("requests", "tokens"):
        assert limits[name]["limit"] == int(response.headers[f"x-ratelimit-limit-{name}"])
        assert limits[name]["remaining"] == int(
            response.headers[f"x-ratelimit-remaining-{name}"])
        assert limits[name]["reset_seconds"] == pytest.approx(
            seconds(response.headers[f"x-ratelimit-reset-{name}"]), abs=0.002)


def test_the_sdk_retry_waits_as_told_then_succeeds(server: ServerThread,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[int, str | None]] = []  # every attempt the SDK made: status, wait

    def record(response: httpx2.Response) -> None:
        seen.append((response.status_code, response.headers.get("retry-after-ms")))

    with caplog.at_level(logging.INFO, logger="openai"), \
            openai.DefaultHttpxClient(event_hooks={"response": [record]}) as transport, \
            strict_sdk(server, api_key="retry", max_retries=2, http_client=transport) as retrying, \
            http(server, "retry") as client:
        told = int(drain_requests(client).headers["retry-after-ms"]) / 1000
        assert 0 < told <= 1
        # Take the next request the moment it refills: the bucket is then empty for a
        # whole second, and the SDK's first attempt surely meets a 429.
        time.sleep(told)
        while create(client).status_code == 429:
            time.sleep(0.01)
        started = time.monotonic()
        raw = retrying.responses.with_raw_response.create(model=MODEL, input="again",
                                                          max_output_tokens=OUTPUT)
        elapsed = time.monotonic() - started
    assert raw.parse().output_text == "You said: again"
    assert raw.retries_taken >= 1
    assert [status for status, _ in seen] == [429] * raw.retries_taken + [200]
    waits = [float(m.group(1)) for r in caplog.records
             if (m := re.match(r"Retrying request in ([\d.]+) seconds", r.getMessage()))]
    # Each wait is exactly the server's retry-after-ms (not the SDK's own backoff),
    # at most a second here, and the SDK really waited it.
    told_ms = [int(ms) / 1000 for status, ms in seen if status == 429 and ms is not None]
    assert waits == pytest.approx(told_ms, abs=1e-6)
    assert all(0 < wait <= 1 for wait in waits)
    assert elapsed >= sum(waits)
    assert raw.headers["x-ratelimit-limit-requests"] == str(RPM)


def test_requests_without_max_output_tokens_are_charged_the_default_budget(
        server: ServerThread) -> None:
    """A request that leaves max_output_tokens out may generate the default budget
    (here the whole context): that is what it is charged until it ends, and what it did
    not use then comes back, so a burst cannot spend the limit many times over."""
    with http(server, "default-budget") as client:
        with client.stream("POST", "/v1/responses", json={
                "model": MODEL, "input": "[[stall]]", "stream": True}) as held:
            assert held.status_code == 200
            # 3 tokens of prompt, and the 997 its context leaves: the whole minute's.
            assert held.headers["x-ratelimit-remaining-tokens"] == "0"
            refused = create(client, max_output_tokens=None)
            error = assert_openai_error(refused, 429, code="rate_limit_exceeded",
                                        type="tokens")
            assert "tokens per minute" in error["message"]
        # The stream was left: its unused tokens come back (refilling alone would take
        # a minute).
        deadline = time.monotonic() + 5
        while (response := create(client, max_output_tokens=None)).status_code == 429:
            assert time.monotonic() < deadline, "the unused tokens never came back"
            time.sleep(0.02)
        assert response.json()["status"] == "completed"
        assert response.json()["max_output_tokens"] is None


def test_a_default_budget_that_can_never_fit_says_so(tmp_path_factory: pytest.TempPathFactory
                                                     ) -> None:
    engine = ScriptedEngine(model_name=MODEL)  # the default context, 8192
    with serve_scripted(tmp_path_factory, engine=engine, api_keys=("k",),
                        rate_limit_tokens_per_minute=TPM) as small, http(small, "k") as client:
        refused = create(client, max_output_tokens=None)
        error = assert_openai_error(refused, 429, type="tokens")
        assert refused.headers["x-should-retry"] == "false"
        assert "set max_output_tokens" in error["message"]
        assert create(client).status_code == 200


def test_reads_and_input_tokens_count_as_requests(server: ServerThread) -> None:
    with http(server, "reader") as client:
        created = create(client).json()
        conversation = client.post("/v1/conversations", json={}).json()
        reads = [
            lambda: client.get(f"/v1/responses/{created['id']}"),
            lambda: client.get(f"/v1/responses/{created['id']}/input_items"),
            lambda: client.post("/v1/responses/input_tokens",
                                json={"model": MODEL, "input": "count me"}),
            lambda: client.get("/v1/responses/resp_missing"),
            lambda: client.get(f"/v1/conversations/{conversation['id']}/items"),
        ]
        statuses = [reads[n % len(reads)]().status_code for n in range(RPM + 10)]
        assert 429 in statuses, statuses
        refused = reads[2]()
        assert_openai_error(refused, 429, code="rate_limit_exceeded", type="requests")
        assert refused.headers["retry-after"] == "1"
        for conversation_request in (
                lambda: client.get(f"/v1/conversations/{conversation['id']}"),
                lambda: client.post(f"/v1/conversations/{conversation['id']}/items",
                                    json={"items": [{"role": "user", "content": "x"}]})):
            assert_openai_error(conversation_request(), 429, type="requests")
        # The models list reads nothing per key: never limited.
        assert client.get("/v1/models").status_code == 200
    with http(server, "bystander") as other:
        assert other.get(f"/v1/responses/{created['id']}").status_code == 404


def test_a_burst_cannot_spend_the_token_limit_many_times_over(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The probe: 25 background requests without max_output_tokens, each generating as
    much as it may (ignore_eos), were all admitted under a tokens-per-minute limit (their
    output was charged as 0) and used five times the limit. Each is now charged its
    effective budget up front, so the minute's tokens admit only as many as it holds."""
    tpm, context = 5000, 1000
    engine = ScriptedEngine(model_name=MODEL, max_model_len=context)
    with serve_scripted(tmp_path_factory, engine=engine, api_keys=("k",),
                        rate_limit_tokens_per_minute=tpm) as burst, http(burst, "k") as client:
        started = time.monotonic()
        answers = [client.post("/v1/responses", json={
            "model": MODEL, "input": "go", "background": True, "ignore_eos": True})
            for _ in range(25)]
        admitted = [a.json()["id"] for a in answers if a.status_code == 200]
        for refused in (a for a in answers if a.status_code != 200):
            assert_openai_error(refused, 429, type="tokens")
        used = 0
        for response_id in admitted:
            deadline = time.monotonic() + 30
            while (got := client.get(f"/v1/responses/{response_id}").json())["status"] in (
                    "queued", "in_progress"):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            used += got["usage"]["total_tokens"]
        elapsed = time.monotonic() - started
    # Each took ~1 token of prompt and the 999 its context left.
    assert len(admitted) == tpm // context, len(admitted)
    assert used <= tpm + tpm * elapsed / 60, (used, elapsed)


HISTORY = [{"role": "user", "content": "My name is Ada."},
           {"role": "assistant", "content": "Hello Ada."},
           {"role": "user", "content": "Remember the number 42."}]


def test_compact_is_charged_like_a_create(server: ServerThread) -> None:
    """POST /v1/responses/compact takes a request and the summary's whole budget (its
    prompt and the most it may write, 64 tokens at least) up front, gives back what the
    summary did not use, and is refused with 429 while the key's tokens are held."""
    with strict_sdk(server, "compact") as sdk, http(server, "compact") as client:
        raw = sdk.responses.with_raw_response.compact(model=MODEL, input=HISTORY)
        compacted = raw.parse()
        assert compacted.usage.input_tokens > 0 and compacted.usage.output_tokens > 0
        assert raw.headers["x-ratelimit-remaining-requests"] == str(RPM - 1)
        charged = TPM - int(raw.headers["x-ratelimit-remaining-tokens"])
        assert charged >= compacted.usage.input_tokens + 64, charged
        # Settled: what it did not use is back (and a second of refill at most since).
        after = client.get("/v1/models")
        remaining = int(after.headers["x-ratelimit-remaining-tokens"])
        assert TPM - compacted.usage.total_tokens <= remaining <= \
            TPM - compacted.usage.total_tokens + 20, (remaining, compacted.usage)
    with http(server, "compact-held") as client, strict_sdk(server, "compact-held") as sdk:
        with client.stream("POST", "/v1/responses", json={
                "model": MODEL, "input": "[[stall]]", "stream": True,
                "max_output_tokens": 950}) as held:
            assert held.status_code == 200
            with pytest.raises(openai.RateLimitError) as refused:
                sdk.responses.compact(model=MODEL, input=HISTORY)
            error = assert_openai_error(refused.value.response, 429,
                                        code="rate_limit_exceeded", type="tokens")
            assert "tokens per minute" in error["message"]
            assert int(refused.value.response.headers["retry-after"]) >= 1
            assert "x-ratelimit-remaining-tokens" in refused.value.response.headers


def test_context_management_charges_the_summary_turn(server: ServerThread) -> None:
    """A create that compacts its prompt first is charged the summary's turn on top of
    its own estimate: the same request without compaction is charged far less."""
    question = [*HISTORY, {"role": "assistant", "content": "I will."},
                {"role": "user", "content": "And now?"}]
    charges = {}
    usages = {}
    for key, management in (("plain-create", None),
                            ("compact-create", [{"type": "compaction",
                                                 "compact_threshold": 1}])):
        with strict_sdk(server, key) as sdk:
            raw = sdk.responses.with_raw_response.create(
                model=MODEL, input=question, max_output_tokens=OUTPUT,
                **({"context_management": management} if management else {}))
            charges[key] = TPM - int(raw.headers["x-ratelimit-remaining-tokens"])
            usages[key] = raw.parse().usage
    compacting = usages["compact-create"]
    assert compacting is not None and usages["plain-create"] is not None
    # Its charge holds the summary turn (the whole history in, the summary out) and the
    # answer's budget.
    assert charges["compact-create"] >= compacting.total_tokens - \
        usages["plain-create"].output_tokens, (charges, compacting)
    assert charges["compact-create"] > charges["plain-create"] + 40, charges
