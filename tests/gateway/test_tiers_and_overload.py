"""Service tiers (allowed list, echo, engine priority) and the engine queue bound (503)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Literal

import httpx2
import openai
import pytest

from tests.support.errors import assert_openai_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, engine_of, serve_scripted
from tests.support.waiting import wait_until
from trio_responses import Settings
from trio_responses.runtime.prepare import TIER_PRIORITY

from .helpers import MODEL, http

Tier = Literal["auto", "default", "flex", "scale", "priority"]


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory,
                        responses_allowed_service_tiers=("auto", "default")) as server:
        yield server


@pytest.fixture(scope="module")
def all_tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, responses_default_service_tier="flex") as server:
        yield server


def last_priority(server: ServerThread) -> int:
    return server.call(lambda: engine_of(server).requests[-1].priority)


def test_tier_outside_the_list_is_400(restricted: ServerThread) -> None:
    with http(restricted) as client:
        for tier in ("flex", "priority", "scale"):
            response = client.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                          "service_tier": tier})
            error = assert_openai_error(response, 400, param="service_tier",
                                        code="invalid_value")
            assert repr(tier) in error["message"] and "auto, default" in error["message"]
        unknown = client.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                     "service_tier": "gold"})
        assert_openai_error(unknown, 400, param="service_tier")
    with strict_sdk(restricted) as client, pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="hi", service_tier="flex")
    assert raised.value.param == "service_tier"


def test_response_echoes_the_tier_it_ran_with(restricted: ServerThread) -> None:
    with strict_sdk(restricted) as client:
        assert client.responses.create(model=MODEL, input="hi").service_tier == "default"
        auto = client.responses.create(model=MODEL, input="hi", service_tier="auto")
        assert auto.service_tier == "default"
        explicit = client.responses.create(model=MODEL, input="hi", service_tier="default")
        assert explicit.service_tier == "default"
        assert client.responses.retrieve(auto.id).service_tier == "default"
        with client.responses.stream(model=MODEL, input="hi", service_tier="auto") as stream:
            created = next(iter(stream))
            assert created.type == "response.created"
            assert created.response.service_tier == "default"
            assert stream.get_final_response().service_tier == "default"


def test_tiers_map_to_engine_priority(all_tiers: ServerThread) -> None:
    with strict_sdk(all_tiers) as client:
        # The server's default tier (flex here) applies when the request names none.
        default = client.responses.create(model=MODEL, input="hi")
        assert default.service_tier == "flex"
        assert last_priority(all_tiers) == TIER_PRIORITY["flex"] == 10
        tiers: tuple[tuple[Tier, int], ...] = (
            ("priority", -10), ("default", 0), ("scale", 0), ("auto", 0), ("flex", 10))
        for tier, priority in tiers:
            response = client.responses.create(model=MODEL, input="hi", service_tier=tier)
            assert response.service_tier == ("default" if tier == "auto" else tier)
            assert last_priority(all_tiers) == priority, tier
        # vLLM's own priority field wins over the tier.
        client.responses.create(model=MODEL, input="hi", service_tier="priority",
                                extra_body={"priority": 7})
        assert last_priority(all_tiers) == 7


# -- overload -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, max_queued_requests=1) as server:
        yield server


def test_engine_queue_bound_gives_503(bounded: ServerThread) -> None:
    engine = engine_of(bounded)
    with http(bounded) as client:
        assert client.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                           ).status_code == 200
        with client.stream("POST", "/v1/responses", json={
                "model": MODEL, "input": "[[stall]]", "stream": True}) as held:
            assert held.status_code == 200
            wait_until(lambda: bounded.call(lambda: engine.statistics().running) == 1)
            with http(bounded) as second:
                refused = second.post("/v1/responses", json={"model": MODEL, "input": "hi"})
                error = assert_openai_error(refused, 503, code="engine_unavailable",
                                            type="server_error")
                assert "overloaded" in error["message"]
                assert refused.headers["retry-after"] == "1"
                assert refused.headers["retry-after-ms"] == "1000"
                # Reads are not queued work: they still answer.
                assert second.get("/v1/models").status_code == 200
        # The held stream's client left; its engine request is aborted and room is back
        # once its run is over (the engine's count drops as the abort lands, a little
        # before the run has ended and given back its admission).
        wait_until(lambda: bounded.call(lambda: engine.statistics().running) == 0)
        registry = bounded.app_state.service.registry
        wait_until(lambda: bounded.call(lambda: not registry.live()))
        assert client.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                           ).status_code == 200


def test_sdk_retries_503_after_retry_after(bounded: ServerThread) -> None:
    """The SDK meets the 503, waits the second it was told, and gets through once the
    engine has room."""
    engine = engine_of(bounded)
    statuses: list[int] = []
    result: list[str] = []

    def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    def sdk_call() -> None:
        with openai.DefaultHttpxClient(event_hooks={"response": [record]}) as transport, \
                strict_sdk(bounded, max_retries=2, http_client=transport) as client:
            result.append(client.responses.create(model=MODEL, input="later").output_text)

    with http(bounded) as client, client.stream("POST", "/v1/responses", json={
            "model": MODEL, "input": "[[stall]]", "stream": True}) as held:
        assert held.status_code == 200
        wait_until(lambda: bounded.call(lambda: engine.statistics().running) == 1)
        caller = threading.Thread(target=sdk_call)
        caller.start()
        wait_until(lambda: statuses == [503])
    caller.join(10)
    assert not caller.is_alive()
    assert statuses == [503, 200]
    assert result == ["You said: later"]


# -- tiers per key ------------------------------------------------------------------

@pytest.fixture(scope="module")
def per_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """k-batch may use flex only; k-std default and flex; k-any the server's list."""
    with serve_scripted(tmp_path_factory, api_keys=("k-batch", "k-std", "k-any"),
                        api_key_service_tiers=("k-batch=flex", "k-std=default,flex")
                        ) as server:
        yield server


def test_the_operator_restricts_tiers_per_key(per_key: ServerThread) -> None:
    """The probe: any key could ask for service_tier "priority" (or a low priority
    number) and go first. --api-key-service-tiers lists what each key may use."""
    with http(per_key, "k-batch") as batch, http(per_key, "k-std") as std, \
            http(per_key, "k-any") as anyone:
        for client, tier in ((batch, "priority"), (batch, "default"), (std, "priority")):
            refused = client.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                         "service_tier": tier})
            error = assert_openai_error(refused, 400, param="service_tier",
                                        code="invalid_value")
            assert "this API key" in error["message"]
        # A request naming no tier runs with the server's default (auto) if the key may
        # use it, else with the key's first tier.
        assert batch.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                          ).json()["service_tier"] == "flex"
        assert last_priority(per_key) == TIER_PRIORITY["flex"]
        assert std.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                        ).json()["service_tier"] == "default"
        assert std.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                               "service_tier": "flex"}
                        ).json()["service_tier"] == "flex"
        assert anyone.post("/v1/responses", json={"model": MODEL, "input": "hi"}
                           ).json()["service_tier"] == "default"
        # The priority field may not ask for more than the key's best tier.
        for client, priority in ((batch, 9), (std, -1)):
            refused = client.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                         "priority": priority})
            assert_openai_error(refused, 400, param="priority", code="invalid_value")
        assert batch.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                 "priority": 10}).status_code == 200
        assert std.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                               "priority": 0}).status_code == 200
        # A key without a list of its own has the server's.
        fast = anyone.post("/v1/responses", json={"model": MODEL, "input": "hi",
                                                  "service_tier": "priority",
                                                  "priority": -20})
        assert fast.status_code == 200 and fast.json()["service_tier"] == "priority"
        assert last_priority(per_key) == -20


@pytest.mark.parametrize(("entries", "problem"), [
    (("k9=flex",), "not configured"),
    (("k1=gold",), "unknown service tier"),
    (("k1",), "KEY=TIER"),
    (("k1=",), "KEY=TIER"),
])
def test_bad_tier_entries_are_refused_at_start(entries: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings(api_keys=("k1",), api_key_service_tiers=entries)


def test_tier_entries_as_flags_and_variables() -> None:
    from_flags = Settings.from_args(["--api-key", "k1", "--api-key", "k=2",
                                     "--api-key-service-tiers", "k1=flex,default",
                                     "--api-key-service-tiers", "k=2=priority"], environ={})
    from_env = Settings.from_env({"TRIO_RESPONSES_API_KEYS": "k1,k=2",
                                  "TRIO_RESPONSES_API_KEY_SERVICE_TIERS":
                                  "k1=flex,default; k=2=priority"})
    for settings in (from_flags, from_env):
        assert settings.service_tiers_by_key() == {"k1": ("flex", "default"),
                                                   "k=2": ("priority",)}
