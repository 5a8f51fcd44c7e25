"""GET /metrics: Prometheus text with requests by route and status, live and background
responses, tokens, TTFT and duration histograms, cancellations and aborts by cause."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.waiting import wait_until

from .helpers import MODEL, http

KEY = "metrics-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, api_keys=(KEY,)) as server:
        yield server


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with http(server, KEY) as client:
        yield client


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_the_key(server: ServerThread) -> None:
    with http(server) as anonymous:
        assert anonymous.get("/metrics").status_code == 401


def test_requests_by_route_and_status(client: httpx.Client) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                           ).status_code == 200
    assert client.post("/v1/responses", json={"model": MODEL}).status_code == 400
    assert client.get("/v1/responses/resp_missing").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def delta(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return (value(after, "trio_responses_http_requests_total", **labels)
                - value(before, "trio_responses_http_requests_total", **labels))

    assert delta("/v1/responses", "POST", "200") == 3
    assert delta("/v1/responses", "POST", "400") == 1
    assert delta("/v1/responses/<response_id>", "GET", "404") == 1
    assert delta("unmatched", "GET", "404") == 1


def test_tokens_and_latency_histograms(client: httpx.Client) -> None:
    before = scrape(client)
    response = client.post("/v1/responses", json={"model": MODEL, "input": "count my tokens"})
    usage = response.json()["usage"]
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("trio_responses_tokens_total", kind="input") == usage["input_tokens"] > 0
    assert delta("trio_responses_tokens_total", kind="output") == usage["output_tokens"] > 0
    assert delta("trio_responses_time_to_first_token_seconds_count") == 1
    assert delta("trio_responses_response_duration_seconds_count") == 1
    assert delta("trio_responses_responses_total", status="completed") == 1
    assert value(after, "trio_responses_response_duration_seconds_bucket", le="+Inf") \
        == value(after, "trio_responses_response_duration_seconds_count")
    # A second identical prompt is served from the (scripted) prefix cache.
    client.post("/v1/responses", json={"model": MODEL, "input": "count my tokens"})
    cached = scrape(client)
    assert value(cached, "trio_responses_tokens_total", kind="cached") \
        - value(after, "trio_responses_tokens_total", kind="cached") == usage["input_tokens"]


def test_live_responses_and_disconnect_cause(server: ServerThread,
                                             client: httpx.Client) -> None:
    engine = engine_of(server)
    before = scrape(client)
    assert value(before, "trio_responses_live_responses") == 0
    with http(server, KEY) as streamer, streamer.stream(
            "POST", "/v1/responses",
            json={"model": MODEL, "input": "[[stall]]", "stream": True}) as held:
        # Keep the iterator referenced: a dropped one closes the connection at once.
        chunks = held.iter_raw()
        for chunk in chunks:
            if b"response.output_text.delta" in chunk:
                break
        during = scrape(client)
        assert value(during, "trio_responses_live_responses") == 1
        assert value(during, "trio_responses_engine_running_requests") == 1
        response_id = server.call(lambda: engine.requests[-1].request_id)
    # The client hung up mid-stream: the run is cancelled and the engine request aborted.
    wait_until(lambda: server.call(lambda: response_id in engine.aborted))
    wait_until(lambda: value(scrape(client), "trio_responses_live_responses") == 0)
    after = scrape(client)
    for name in ("trio_responses_cancellations_total", "trio_responses_engine_aborts_total"):
        assert value(after, name, cause="disconnect") \
            - value(before, name, cause="disconnect") == 1, name
    assert value(after, "trio_responses_responses_total", status="cancelled") \
        - value(before, "trio_responses_responses_total", status="cancelled") == 1
    assert value(after, "trio_responses_engine_running_requests") == 0


def test_background_gauge_and_cancel_cause(client: httpx.Client) -> None:
    before = scrape(client)
    created = client.post("/v1/responses", json={"model": MODEL, "input": "[[stall]]",
                                                 "background": True})
    response_id = created.json()["id"]
    wait_until(lambda: value(scrape(client), "trio_responses_background_responses") == 1)
    assert value(scrape(client), "trio_responses_live_responses") == 1
    cancelled = client.post(f"/v1/responses/{response_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    after = scrape(client)
    assert value(after, "trio_responses_background_responses") == 0
    for name in ("trio_responses_cancellations_total", "trio_responses_engine_aborts_total"):
        assert value(after, name, cause="cancel") - value(before, name, cause="cancel") == 1


def request_series(samples: Samples) -> set[frozenset[tuple[str, str]]]:
    return {labels for (name, labels) in samples if name == "trio_responses_http_requests_total"}


def test_labels_come_from_a_fixed_set(server: ServerThread, client: httpx.Client) -> None:
    """The probe: made-up methods with long names, on made-up paths, without a key, each
    made a new series (2,000 of them made /metrics 16 MB). Now a request whose key did not
    check out is counted in one series, and an unknown method as "other"."""
    before_text = client.get("/metrics").text
    before = request_series(scrape(client))
    with http(server) as anonymous:
        for n in range(50):
            refused = anonymous.request(f"PWNED_METHOD_{n}_{'A' * 1000}", f"/anything{n}")
            assert refused.status_code == 401
        assert anonymous.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                              ).status_code == 401
    for n in range(20):
        assert client.request(f"MADE_UP_{n}", "/v1/responses").status_code in (404, 405)
        assert client.request("POST", f"/made/up/{n}").status_code == 404
    after = scrape(client)
    new = request_series(after) - before
    assert len(new) <= 4, new
    for labels in new:
        values = dict(labels)
        assert values["method"] in {"GET", "POST", "other"}, values
        assert values["route"] in {"unauthenticated", "unmatched"}, values
    assert value(after, "trio_responses_http_requests_total", route="unauthenticated",
                 method="other", status="401") >= 50
    growth = len(client.get("/metrics").text) - len(before_text)
    assert growth < 2000, growth
