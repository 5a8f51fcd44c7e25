"""What one API key may hold at once (issue 13, findings 3 and 7): its share of the
engine queue, its live responses, its open streams. Past a bound the key gets ``429``
(``Retry-After: 1``) while every other key goes on as before.

The probes: with ``--max-queued-requests 20``, k1's 20 stalled background responses
made k2 get ``503`` for as long as they ran; k1 could hold any number of background
responses; any key could hold any number of (stalled) streams.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.errors import assert_openai_error
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.waiting import wait_until
from trio_responses import Settings

from .helpers import MODEL, http

STALL = {"model": MODEL, "input": "[[stall]]"}


def running(server: ServerThread) -> int:
    return server.call(lambda: engine_of(server).statistics().running)


def background(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/responses", json={**STALL, "background": True})


def cancel_all(client: httpx.Client, ids: list[str]) -> None:
    for response_id in ids:
        assert client.post(f"/v1/responses/{response_id}/cancel").status_code == 200


def assert_quota_429(response: httpx.Response, flag: str) -> None:
    error = assert_openai_error(response, 429, code="rate_limit_exceeded", type="requests")
    assert flag in error["message"], error
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "1000"


def test_the_limits_are_on_by_default() -> None:
    defaults = Settings()
    assert defaults.max_responses_per_key > 0
    assert defaults.max_streams_per_key > 0
    assert defaults.max_concurrent_reads_per_key > 0
    assert defaults.max_queued_requests_per_key == 0  # half of --max-queued-requests


# -- the engine queue's share -------------------------------------------------------

@pytest.fixture(scope="module")
def queue_bound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, api_keys=("k1", "k2", "k3"),
                        max_queued_requests=20) as server:
        yield server


def test_one_key_cannot_fill_the_engine_queue(queue_bound: ServerThread) -> None:
    with http(queue_bound, "k1") as k1, http(queue_bound, "k2") as k2:
        held: list[str] = []
        statuses = []
        for _ in range(20):  # the probe: 20 stalled background jobs
            response = background(k1)
            statuses.append(response.status_code)
            if response.status_code == 200:
                held.append(response.json()["id"])
        # Half the queue is k1's share; the rest is refused to k1, with a 429 (its own
        # doing, retry later), not the 503 of a full server.
        assert statuses == [200] * 10 + [429] * 10
        assert_quota_429(background(k1), "--max-queued-requests-per-key")
        wait_until(lambda: running(queue_bound) == 10)
        # k2 is served at once, for as long as k1's jobs run.
        for _ in range(3):
            created = k2.post("/v1/responses", json={"model": MODEL, "input": "hi"})
            assert created.status_code == 200, created.text
            assert created.json()["status"] == "completed"
        cancel_all(k1, held)
        wait_until(lambda: running(queue_bound) == 0)
        # Room again for k1.
        again = background(k1)
        assert again.status_code == 200
        cancel_all(k1, [again.json()["id"]])


def test_the_whole_queue_full_is_still_503(queue_bound: ServerThread) -> None:
    """Keys each within their share can still fill the queue together: then it is the
    server that is full, and everyone gets 503."""
    with http(queue_bound, "k1") as k1, http(queue_bound, "k2") as k2, \
            http(queue_bound, "k3") as k3:
        held = [(k1, background(k1).json()["id"]) for _ in range(10)]
        held += [(k2, background(k2).json()["id"]) for _ in range(10)]
        wait_until(lambda: running(queue_bound) == 20)
        full = k3.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert_openai_error(full, 503, code="engine_unavailable")
        for client, response_id in held:
            cancel_all(client, [response_id])
        wait_until(lambda: running(queue_bound) == 0)


# -- live responses and streams -----------------------------------------------------

@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, api_keys=("k1", "k2"), max_responses_per_key=3,
                        max_streams_per_key=2) as server:
        yield server


def test_one_key_cannot_hold_unbounded_responses(bounded: ServerThread) -> None:
    with http(bounded, "k1") as k1, http(bounded, "k2") as k2:
        held = [background(k1).json()["id"] for _ in range(3)]
        assert_quota_429(background(k1), "--max-responses-per-key")
        # Foreground requests count as much as background ones.
        assert_quota_429(k1.post("/v1/responses", json={"model": MODEL, "input": "hi"}),
                         "--max-responses-per-key")
        # So does a compaction (an engine turn like any other).
        assert_quota_429(k1.post("/v1/responses/compact", json={"model": MODEL,
                                                                "input": "hi"}),
                         "--max-responses-per-key")
        other = k2.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert other.status_code == 200 and other.json()["status"] == "completed"
        # Reads are not responses: k1 still reads its own.
        assert k1.get(f"/v1/responses/{held[0]}").status_code == 200
        cancel_all(k1, held[:1])
        fine = k1.post("/v1/responses", json={"model": MODEL, "input": "hi"})
        assert fine.status_code == 200, fine.text
        cancel_all(k1, held[1:])
        # Finished responses hold nothing: sequential requests never meet the bound.
        for _ in range(5):
            assert k1.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                           ).status_code == 200


def test_one_key_cannot_hold_unbounded_streams(bounded: ServerThread) -> None:
    """The bound on streams bounds a key's memory: each stalled stream may hold up to the
    stream buffer bound."""
    with http(bounded, "k1") as k1, http(bounded, "k2") as k2:
        stored = background(k1).json()["id"]
        with k1.stream("POST", "/v1/responses", json={**STALL, "stream": True}) as first, \
                k1.stream("GET", f"/v1/responses/{stored}?stream=true") as second:
            assert (first.status_code, second.status_code) == (200, 200)
            third = k1.post("/v1/responses", json={**STALL, "stream": True})
            assert_quota_429(third, "--max-streams-per-key")
            resumed = k1.get(f"/v1/responses/{stored}", params={"stream": "true"})
            assert_quota_429(resumed, "--max-streams-per-key")
            # Not streaming is still fine for k1, and streaming for k2.
            assert k1.get(f"/v1/responses/{stored}").status_code == 200
            with k2.stream("POST", "/v1/responses",
                           json={"model": MODEL, "input": "hi", "stream": True}) as other:
                assert other.status_code == 200
                assert b"response.completed" in other.read()
        # The client left both streams: their slots come back.
        wait_until(lambda: running(bounded) == 1)  # only the background job
        with k1.stream("POST", "/v1/responses",
                       json={"model": MODEL, "input": "hi", "stream": True}) as again:
            assert again.status_code == 200
            assert b"response.completed" in again.read()
        # A stream read to its end gives its slot back too.
        for _ in range(3):
            with k1.stream("POST", "/v1/responses",
                           json={"model": MODEL, "input": "hi", "stream": True}) as done:
                assert done.status_code == 200
                done.read()
        cancel_all(k1, [stored])
