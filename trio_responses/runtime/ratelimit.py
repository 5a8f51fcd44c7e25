"""Rate limits per API key: token buckets for requests and tokens per minute.

A bucket holds up to ``limit`` units and refills at ``limit`` per minute. A request
takes one unit from the requests bucket and its token estimate (prompt + output
budget) from the tokens bucket, both or neither; when the tokens are known at the
end, the estimate is settled against the real count. The clock is passed in (Trio's,
so tests run under MockClock), and every figure a client sees comes from
:class:`LimitState`: ``x-ratelimit-*`` headers, ``Retry-After``, and the
``response.rate_limits.updated`` event.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RateLimited


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes reset times: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    millis = max(0, math.ceil(seconds * 1000))
    if millis < 1000:  # (0.9999 s rounds up to a second: "1s", not "1000ms")
        return f"{millis}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass
class _Bucket:
    limit: int
    level: float
    updated: float

    def refill(self, now: float) -> None:
        rate = self.limit / 60.0
        self.level = min(float(self.limit), self.level + (now - self.updated) * rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (inf if it never will be)."""
        if amount > self.limit:
            return math.inf
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing * 60.0 / self.limit

    def reset_seconds(self) -> float:
        return (self.limit - self.level) * 60.0 / self.limit


@dataclass(frozen=True, slots=True)
class LimitState:
    name: str
    limit: int
    remaining: int
    reset_seconds: float


class RateLimiter:
    def __init__(self, *, requests_per_minute: int, tokens_per_minute: int,
                 clock: Callable[[], float]) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_minute)

    def _limits(self) -> list[tuple[str, int]]:
        return [(name, limit) for name, limit in
                (("requests", self.requests_per_minute), ("tokens", self.tokens_per_minute))
                if limit]

    def _bucket(self, owner: str, name: str, limit: int, now: float) -> _Bucket:
        bucket = self._buckets.get((owner, name))
        if bucket is None:
            bucket = self._buckets[(owner, name)] = _Bucket(limit, float(limit), now)
        bucket.refill(now)
        return bucket

    def acquire(self, owner: str, tokens: int | None, *, output_defaulted: bool = False
                ) -> list[LimitState]:
        """Take one request and ``tokens`` for ``owner``, or raise RateLimited.
        ``tokens`` None: a request that generates nothing (a read), which takes from the
        requests bucket only. ``output_defaulted``: the estimate holds the default output
        budget (max_output_tokens was left out), which a refusal then says."""
        now = self._clock()
        wanted = {"requests": 1} if tokens is None else {"requests": 1, "tokens": tokens}
        buckets = {name: self._bucket(owner, name, limit, now) for name, limit in self._limits()}
        waits = {name: bucket.wait_for(wanted[name]) for name, bucket in buckets.items()
                 if name in wanted}
        name, wait = max(waits.items(), key=lambda kv: kv[1], default=("requests", 0.0))
        if wait > 0:
            headers = self.headers(self._states(owner, buckets))
            if math.isinf(wait):
                headers["x-should-retry"] = "false"
                advice = (" (most of them the default output budget: set max_output_tokens)"
                          if output_defaulted and name == "tokens" else "")
                error = RateLimited(
                    f"Request too large: it needs {wanted[name]} {name}{advice} but the limit "
                    f"is {buckets[name].limit} {name} per minute.", headers=headers)
            else:
                headers["retry-after"] = str(max(1, math.ceil(wait)))
                headers["retry-after-ms"] = str(math.ceil(wait * 1000))
                error = RateLimited(
                    f"Rate limit reached for {name} per minute: limit {buckets[name].limit}. "
                    f"Please try again in {go_duration(wait)}.", headers=headers)
            error.type = name  # as OpenAI: "requests" or "tokens", the limit that was hit
            raise error
        for key, bucket in buckets.items():
            bucket.level -= wanted.get(key, 0)
        return self._states(owner, buckets)

    def settle(self, owner: str, estimated: int, actual: int) -> None:
        """Correct a request's token charge once its real count is known."""
        if not self.tokens_per_minute:
            return
        bucket = self._bucket(owner, "tokens", self.tokens_per_minute, self._clock())
        bucket.level = min(float(bucket.limit), bucket.level + estimated - actual)

    def _states(self, owner: str, buckets: dict[str, _Bucket]) -> list[LimitState]:
        return [LimitState(name, bucket.limit, max(0, math.floor(bucket.level)),
                           bucket.reset_seconds()) for name, bucket in buckets.items()]

    def states(self, owner: str) -> list[LimitState]:
        now = self._clock()
        return self._states(owner, {name: self._bucket(owner, name, limit, now)
                                    for name, limit in self._limits()})

    @staticmethod
    def headers(states: list[LimitState]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for state in states:
            headers[f"x-ratelimit-limit-{state.name}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{state.name}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{state.name}"] = go_duration(state.reset_seconds)
        return headers

    @staticmethod
    def event_fields(states: list[LimitState]) -> dict[str, object]:
        return {"rate_limits": [
            {"name": s.name, "limit": s.limit, "remaining": s.remaining,
             "reset_seconds": round(s.reset_seconds, 3)} for s in states]}
