"""Retention over HTTP (issue 13, finding 9): stored responses used to stay forever. With
a time to live a finished response is gone (the same 404 as an id that never existed)
once a sweep after its expiry has run, while a running response, older still, stays."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # A one-second time to live, swept ten times a second.
    with serve_scripted(tmp_path_factory, store_ttl_days=1 / 86_400,
                        store_sweep_interval_seconds=0.1) as server:
        yield server


def gone(client: openai.OpenAI, response_id: str) -> bool:
    try:
        client.responses.retrieve(response_id)
    except openai.NotFoundError:
        return True
    return False


def test_finished_responses_expire_and_running_ones_stay(server: ServerThread) -> None:
    with strict_sdk(server) as client:
        running = client.responses.create(model="scripted", input="[[stall]]",
                                          background=True)
        finished = client.responses.create(model="scripted", input="hello")
        assert client.responses.retrieve(finished.id).status == "completed"
        wait_until(lambda: gone(client, finished.id), what="the expiry of a response")
        with pytest.raises(openai.NotFoundError):
            client.responses.input_items.list(finished.id)
        # Older than the finished one, but running: the sweeps leave it alone.
        assert client.responses.retrieve(running.id).status in ("queued", "in_progress")
        assert client.responses.cancel(running.id).status == "cancelled"
        wait_until(lambda: gone(client, running.id), what="the expiry once it ended")
