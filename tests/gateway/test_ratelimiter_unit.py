"""RateLimiter with a fake clock: bucket refill math, 429 figures, settlement, the
reset-time format. No server, no sleeping."""

from __future__ import annotations

import pytest

from trio_responses.errors import RateLimited
from trio_responses.runtime.ratelimit import LimitState, RateLimiter, go_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock, rpm: int = 0, tpm: int = 0) -> RateLimiter:
    return RateLimiter(requests_per_minute=rpm, tokens_per_minute=tpm, clock=clock)


def by_name(states: list[LimitState]) -> dict[str, LimitState]:
    return {state.name: state for state in states}


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0ms"), (-1, "0ms"), (0.0004, "1ms"), (0.02, "20ms"), (0.5, "500ms"),
    (0.9994, "1s"), (1, "1s"), (1.2, "2s"), (59, "59s"), (59.5, "1m0s"), (60, "1m0s"),
    (61, "1m1s"), (360, "6m0s"), (3599.5, "1h0m0s"), (3723, "1h2m3s"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_disabled_by_default() -> None:
    off = limiter(FakeClock())
    assert not off.enabled
    assert off.acquire("a", 10**9) == []
    assert off.headers(off.states("a")) == {}


def test_requests_bucket_burst_then_refill() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=60)
    for taken in range(1, 61):
        states = by_name(rl.acquire("a", 0))
        assert states["requests"].remaining == 60 - taken
        assert states["requests"].reset_seconds == pytest.approx(taken)
    with pytest.raises(RateLimited) as raised:
        rl.acquire("a", 0)
    error = raised.value
    assert (error.status, error.code, error.type) == (429, "rate_limit_exceeded", "requests")
    assert error.headers["retry-after"] == "1"
    assert error.headers["retry-after-ms"] == "1000"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert "x-should-retry" not in error.headers
    clock.advance(0.5)  # half a request refilled: not yet
    with pytest.raises(RateLimited) as raised:
        rl.acquire("a", 0)
    assert raised.value.headers["retry-after-ms"] == "500"
    assert raised.value.headers["retry-after"] == "1"  # whole seconds, at least 1
    clock.advance(0.5)
    assert by_name(rl.acquire("a", 0))["requests"].remaining == 0
    clock.advance(3600)  # refills to the limit, never beyond
    assert by_name(rl.states("a"))["requests"].remaining == 60
    assert by_name(rl.states("a"))["requests"].reset_seconds == 0


def test_a_failed_request_costs_nothing() -> None:
    """Both buckets or neither: a request refused for tokens takes no request."""
    clock = FakeClock()
    rl = limiter(clock, rpm=10, tpm=100)
    rl.acquire("a", 90)
    with pytest.raises(RateLimited) as raised:
        rl.acquire("a", 20)
    assert raised.value.type == "tokens"
    # 10 tokens missing at 100 per minute: 6 s.
    assert raised.value.headers["retry-after-ms"] == "6000"
    assert raised.value.headers["retry-after"] == "6"
    states = by_name(rl.states("a"))
    assert states["requests"].remaining == 9
    assert states["tokens"].remaining == 10


def test_the_longer_wait_wins() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=1, tpm=1000)
    rl.acquire("a", 10)
    with pytest.raises(RateLimited) as raised:
        rl.acquire("a", 10)
    assert raised.value.type == "requests"
    assert raised.value.headers["retry-after"] == "60"


def test_more_than_the_limit_is_not_worth_retrying() -> None:
    rl = limiter(FakeClock(), rpm=10, tpm=100)
    with pytest.raises(RateLimited) as raised:
        rl.acquire("a", 101)
    error = raised.value
    assert error.type == "tokens"
    assert error.headers["x-should-retry"] == "false"
    assert "retry-after" not in error.headers and "retry-after-ms" not in error.headers
    assert "101" in error.message and "100" in error.message
    # Nothing was taken.
    assert by_name(rl.states("a"))["tokens"].remaining == 100


def test_owners_have_their_own_buckets() -> None:
    rl = limiter(FakeClock(), rpm=1)
    rl.acquire("a", 0)
    with pytest.raises(RateLimited):
        rl.acquire("a", 0)
    assert by_name(rl.acquire("b", 0))["requests"].remaining == 0


def test_settle_refunds_and_charges() -> None:
    clock = FakeClock()
    rl = limiter(clock, tpm=1000)
    rl.acquire("a", 600)
    rl.settle("a", estimated=600, actual=100)  # used less: 500 back
    assert by_name(rl.states("a"))["tokens"].remaining == 900
    rl.settle("a", estimated=0, actual=950)  # used more than charged: may go below zero
    assert by_name(rl.states("a"))["tokens"].remaining == 0
    with pytest.raises(RateLimited) as raised:
        rl.acquire("a", 1)
    # Level is -50: 51 tokens missing at 1000/min.
    assert raised.value.headers["retry-after-ms"] == "3060"
    rl.settle("a", estimated=10_000, actual=0)  # never above the limit
    assert by_name(rl.states("a"))["tokens"].remaining == 1000


def test_settle_without_a_token_limit_is_a_no_op() -> None:
    rl = limiter(FakeClock(), rpm=5)
    rl.settle("a", estimated=10, actual=1000)
    assert "tokens" not in by_name(rl.states("a"))


def test_headers_and_event_fields() -> None:
    clock = FakeClock()
    rl = limiter(clock, rpm=100, tpm=6000)
    states = rl.acquire("a", 600)
    assert rl.headers(states) == {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-requests": "600ms",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5400",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert rl.event_fields(states) == {"rate_limits": [
        {"name": "requests", "limit": 100, "remaining": 99, "reset_seconds": 0.6},
        {"name": "tokens", "limit": 6000, "remaining": 5400, "reset_seconds": 6.0},
    ]}
    only_tokens = limiter(clock, tpm=50)
    assert set(only_tokens.headers(only_tokens.states("a"))) == {
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}
