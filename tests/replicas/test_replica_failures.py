"""A replica that dies or is drained: kill -9 leaves its running responses to the lease
(a surviving replica saves them failed once the dead one's heartbeat is older than
--store-lease-seconds, and a follower on the survivor gets a terminal event); SIGTERM
ends every response it owned with a terminal event and a saved status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import trio

from tests.reliability.procs import ServerProcess
from tests.replicas.conftest import start_replicas
from tests.support.events import check_stream, sdk_events, sdk_events_until_error
from tests.support.sdk import strict_sdk
from tests.support.waiting import wait_until

MODEL = "scripted"


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[list[ServerProcess]]:
    started = start_replicas(tmp_path, postgres_url, 2,
                             extra=("--store-lease-seconds", "1",
                                    "--shutdown-grace-seconds", "0.5"))
    yield started
    for replica in started:
        replica.stop()


def stalled(client: openai.OpenAI, n: int) -> list[str]:
    return [client.responses.create(model=MODEL, input=f"run {i} [[stall]]",
                                    background=True).id for i in range(n)]


async def test_a_killed_replicas_responses_fail_after_its_lease(
        pair: list[ServerProcess]) -> None:
    a, b = pair
    with strict_sdk(a.base_url + "/v1") as on_a, strict_sdk(b.base_url + "/v1",
                                                            timeout=30) as on_b:
        ids = stalled(on_a, 3)
        follow: list[dict[str, object]] = []

        def follower() -> None:
            with on_b.responses.retrieve(ids[0], stream=True) as stream:
                follow.extend(sdk_events(stream))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, follower)
            await trio.sleep(0.3)  # let the follower join (it waits either way)
            a.kill9()
        # The follower on B was woken by the sweep and got a well-formed end.
        check_stream(follow)
        assert follow[-1]["type"] == "response.failed"
        for response_id in ids:
            got = on_b.responses.retrieve(response_id)
            assert got.status == "failed" and got.error is not None


def test_a_drained_replica_ends_every_response_it_owned(pair: list[ServerProcess]) -> None:
    a, b = pair
    with strict_sdk(a.base_url + "/v1") as on_a, strict_sdk(b.base_url + "/v1") as on_b:
        ids = stalled(on_a, 3)
        code, _ = a.terminate(30)
        assert code == 0
        for response_id in ids:
            got = on_b.responses.retrieve(response_id)
            assert got.status == "failed"
            # The stream it sent is kept, ending as the drain ended it: an error event
            # (which the SDK raises), then response.failed.
            with on_b.responses.retrieve(response_id, stream=True) as stream:
                events, error = sdk_events_until_error(stream)
            assert "shut down" in str(error)
            assert [e["type"] for e in events][:1] == ["response.created"]


async def test_draining_a_replica_ends_its_followers_of_responses_running_elsewhere(
        pair: list[ServerProcess]) -> None:
    a, b = pair
    with strict_sdk(a.base_url + "/v1") as on_a, strict_sdk(b.base_url + "/v1",
                                                            timeout=30) as on_b:
        response_id = stalled(on_b, 1)[0]
        seen: list[dict[str, object]] = []
        ended = trio.Event()

        def follower() -> None:
            try:
                with on_a.responses.retrieve(response_id, stream=True) as stream:
                    for event in stream:
                        seen.append(event.model_dump(mode="json"))
            except openai.APIError:
                pass  # the connection closed under it: the client resumes elsewhere

        async with trio.open_nursery() as nursery:
            async def follow_then_mark() -> None:
                await trio.to_thread.run_sync(follower)
                ended.set()

            nursery.start_soon(follow_then_mark)
            await trio.to_thread.run_sync(lambda: wait_until(
                lambda: bool(seen), 10, "the follower's first event"))
            code, _ = await trio.to_thread.run_sync(a.terminate, 30)
            assert code == 0
            assert "Traceback" not in a.log()
            with trio.fail_after(10):
                await ended.wait()
        # The response still runs on B, and a follower there resumes after what was seen.
        assert on_b.responses.retrieve(response_id).status in ("queued", "in_progress")
        last = int(str(seen[-1]["sequence_number"]))
        cancelled = on_b.responses.cancel(response_id)
        assert cancelled.status == "cancelled"
        with on_b.responses.retrieve(response_id, stream=True,
                                     starting_after=last) as stream:
            rest = sdk_events(stream)
        assert rest[0]["sequence_number"] == last + 1
        assert rest[-1]["type"] == "response.incomplete"
