"""Prometheus metrics (``GET /metrics``), with prometheus-client.

Each app has its own ``CollectorRegistry`` (two apps in one process — tests — do not
collide). Request counts come from the web layer; everything about responses comes
from :meth:`Metrics.observe`, which every run calls for each event it publishes: the
first text delta gives time-to-first-token, the terminal event gives duration, tokens
and — for runs ended early — the cause, and whether the engine request was aborted.
Live gauges read the registry and the engine when scraped.

Label values come from fixed sets only (:meth:`Metrics.count_request`), never from what
a client sent: a method outside the HTTP methods, or a path no route matches, is
``other``/``unmatched``, and a request whose key did not check out is counted in one
series whatever it asked for; otherwise anyone could grow ``/metrics``, and the server's
memory, without bound by sending made-up methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..engine.base import Engine
from ..protocol.machine import TERMINAL_EVENTS
from ..runtime.registry import Registry
from ..runtime.run import ResponseRun

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"})
# The route label of requests that match no route, and of those whose key did not check
# out (whatever their route: who has no key learns nothing, and adds no series).
UNMATCHED = "unmatched"
UNAUTHENTICATED = "unauthenticated"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("trio_responses_http_requests", "HTTP requests",
                                     ["route", "method", "status"], registry=r)
        self.live = Gauge("trio_responses_live_responses", "Responses running now",
                          registry=r)
        self.background = Gauge("trio_responses_background_responses",
                                "Background responses running now", registry=r)
        self.engine_running = Gauge("trio_responses_engine_running_requests",
                                    "Unfinished requests in the engine", registry=r)
        self.tokens = Counter("trio_responses_tokens", "Tokens by kind", ["kind"], registry=r)
        self.responses = Counter("trio_responses_responses", "Finished responses by status",
                                 ["status"], registry=r)
        self.ttft = Histogram("trio_responses_time_to_first_token_seconds",
                              "From request to the first output text", registry=r,
                              buckets=_LATENCY_BUCKETS)
        self.duration = Histogram("trio_responses_response_duration_seconds",
                                  "From request to the terminal event", registry=r,
                                  buckets=_LATENCY_BUCKETS)
        self.cancellations = Counter("trio_responses_cancellations",
                                     "Responses ended early, by cause", ["cause"], registry=r)
        self.engine_aborts = Counter("trio_responses_engine_aborts",
                                     "Engine requests aborted, by cause", ["cause"], registry=r)
        self._sources: tuple[Callable[[], Registry | None], Engine] | None = None
        self._first_token_seen: set[str] = set()

    def count_request(self, *, route: str | None, method: str, status: int,
                      authenticated: bool) -> None:
        """One HTTP request: ``route`` is the matched route's pattern (None: none)."""
        if not authenticated:
            route = UNAUTHENTICATED
        self.http_requests.labels(route or UNMATCHED,
                                  method if method in METHODS else "other",
                                  str(status) if 100 <= status <= 599 else "other").inc()

    def bind(self, registry: Callable[[], Registry | None], engine: Engine) -> None:
        self._sources = (registry, engine)

    def observe(self, run: ResponseRun, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "response.output_text.delta":
            if run.id not in self._first_token_seen:
                self._first_token_seen.add(run.id)
                self.ttft.observe(trio.current_time() - run.started_at)
        elif kind in TERMINAL_EVENTS:
            self._first_token_seen.discard(run.id)
            response = event["response"]
            self.responses.labels(response["status"]).inc()
            self.duration.observe(trio.current_time() - run.started_at)
            usage = response.get("usage") or {}
            self.tokens.labels("input").inc(usage.get("input_tokens", 0))
            self.tokens.labels("output").inc(usage.get("output_tokens", 0))
            cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
            self.tokens.labels("cached").inc(cached)
            if run.end_cause is not None:
                self.cancellations.labels(run.end_cause).inc()
                if run.engine_aborted:
                    self.engine_aborts.labels(run.end_cause).inc()

    def render(self) -> bytes:
        if self._sources is not None:
            registry, engine = self._sources
            live = registry()
            if live is not None:
                stats = live.statistics()
                self.live.set(stats.live)
                self.background.set(stats.background)
            self.engine_running.set(engine.statistics().running)
        return generate_latest(self.registry)
