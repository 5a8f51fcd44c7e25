"""End to end through a real load balancer (nginx, round-robin, the settings of
docs/serving/deployment.md) in front of three replicas on one PostgreSQL database: each
request may land on another replica, and every one works — a previous_response_id chain,
retrieves, a background response streamed live through nginx (events arrive while it
runs: SSE is not buffered) and cancelled by a request that lands elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.procs import ServerProcess
from tests.support.events import check_stream, sdk_events
from tests.support.nginx import load_balancer, nginx_binary, upstreams_used
from tests.support.sdk import strict_sdk

MODEL = "scripted"


@pytest.fixture(scope="module")
def balancer(replicas: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[str, Path]]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/setup installs Debian's nginx where "
                    "apt is available)")
    folder = tmp_path_factory.mktemp("nginx")
    with load_balancer(folder, [r.port for r in replicas]) as url:
        yield url, folder


def test_requests_alternate_between_replicas_and_all_work(
        balancer: tuple[str, Path], replicas: list[ServerProcess]) -> None:
    url, folder = balancer
    before = len(upstreams_used(folder)) if (folder / "access.log").exists() else 0
    with strict_sdk(url + "/v1", timeout=30) as client:
        previous: str | None = None
        for turn in range(6):
            answer = client.responses.create(model=MODEL, input=f"turn {turn}",
                                              previous_response_id=previous)
            assert answer.output_text == f"You said: turn {turn}"
            assert client.responses.retrieve(answer.id).model_dump() == answer.model_dump()
            previous = answer.id
        assert previous is not None
        counted = client.responses.input_tokens.count(model=MODEL, input="x",
                                                      previous_response_id=previous)
        assert counted.input_tokens > client.responses.input_tokens.count(
            model=MODEL, input="x").input_tokens
    used = upstreams_used(folder)[before:]
    assert set(used) == {f"127.0.0.1:{r.port}" for r in replicas}


def test_background_stream_through_the_balancer_and_a_cancel_elsewhere(
        balancer: tuple[str, Path]) -> None:
    url, folder = balancer
    with strict_sdk(url + "/v1", timeout=30) as client:
        # It stalls after its first token: only an unbuffered proxy shows that token.
        with client.responses.create(model=MODEL, input="stop [[stall]] here", stream=True,
                                     background=True) as stream:
            events = []
            for event in stream:
                events.append(event.model_dump(mode="json"))
                if event.type == "response.output_text.delta":
                    break
            response_id = events[0]["response"]["id"]
            # A follower through the balancer (it may land on any replica) sees it too.
            with client.responses.retrieve(response_id, stream=True,
                                           starting_after=0) as follower:
                first = next(iter(follower)).model_dump(mode="json")
            assert first["sequence_number"] == 1
            # The cancel lands on the next replica round-robin: not the running one.
            cancelled = client.responses.cancel(response_id)
            assert cancelled.status == "cancelled"
            events.extend(sdk_events(stream))
        assert client.responses.retrieve(response_id).status == "cancelled"
    check_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    log = (folder / "access.log").read_text().splitlines()
    ran_on = [line for line in log if line.startswith("POST /v1/responses ")][-1]
    cancelled_on = next(line for line in log if f"/{response_id}/cancel " in line)
    assert ran_on.split()[-1] != cancelled_on.split()[-1]


def test_websocket_through_the_balancer_across_replicas(balancer: tuple[str, Path]) -> None:
    url, folder = balancer
    finals = []
    with strict_sdk(url + "/v1", timeout=30) as client:
        previous: str | None = None
        # Each socket is a new upgrade through nginx: round-robin puts them on different
        # replicas, and each continues the previous one's response.
        for turn in range(3):
            with client.responses.connect() as connection:
                request: dict[str, object] = {"type": "response.create", "model": MODEL,
                                              "input": f"socket {turn}"}
                if previous is not None:
                    request["previous_response_id"] = previous
                connection.send(request)  # type: ignore[arg-type]
                events = []
                for event in connection:
                    events.append(event.model_dump(mode="json"))
                    if event.type in ("response.completed", "error"):
                        break
            check_stream(events)
            final = events[-1]["response"]
            assert final["output"][0]["content"][0]["text"] == f"You said: socket {turn}"
            assert final["previous_response_id"] == previous
            previous = final["id"]
            finals.append(final)
        for final in finals:
            assert client.responses.retrieve(final["id"]).status == "completed"
    log = (folder / "access.log").read_text().splitlines()
    upgrades = [line.split()[-1] for line in log if line.startswith("GET /v1/responses 101")]
    assert len(set(upgrades[-3:])) >= 2
