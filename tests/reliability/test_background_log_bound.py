"""A long background response over HTTP with a bounded event log (issue 13, finding 2).

The probe: a 100-byte background request with a huge ``max_output_tokens`` stored a
208 MB event log; a resume then took 30.6 s to its first byte, and a GET, an
``input_items?limit=1`` or a cancel of it ~1.8 s each. Here the log is cut past
``--max-background-log-bytes``, and the strict SDK still reads every endpoint: the
stored object whole, a resume that is the first event and the final one, and a resume
from a sequence number in the cut that is the final event alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.events import as_dict
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, run_ended, serve_scripted
from tests.support.waiting import wait_until

WORDS = " ".join(f"w{i}" for i in range(2000))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, max_background_log_bytes=64 * 1024) as server:
        yield server


def test_a_cut_log_resumes_from_the_final_object(server: ServerThread) -> None:
    with strict_sdk(server) as client:
        created = client.responses.create(model="scripted", input=WORDS, background=True)
        wait_until(lambda: run_ended(server, created.id), what="the response's end")
        final = client.responses.retrieve(created.id)
        assert final.status == "completed" and final.output_text == f"You said: {WORDS}"
        assert [i.id for i in client.responses.input_items.list(created.id, limit=1)]

        replay = [as_dict(e) for e in client.responses.retrieve(created.id, stream=True)]
        assert [e["type"] for e in replay] == ["response.created", "response.completed"]
        assert replay[-1]["response"]["output"][0]["content"][0]["text"] == final.output_text
        last = replay[-1]["sequence_number"]
        assert last > 2000  # one delta per word at least: everything between was cut

        resumed = [as_dict(e) for e in client.responses.retrieve(
            created.id, stream=True, starting_after=100)]
        assert [e["type"] for e in resumed] == ["response.completed"]
        assert resumed[0]["sequence_number"] == last
        assert list(client.responses.retrieve(created.id, stream=True,
                                              starting_after=last)) == []
        assert client.responses.cancel(created.id).status == "completed"
        assert client.responses.delete(created.id) is None
