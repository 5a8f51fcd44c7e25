"""Live work across replicas: a background response runs on the replica that created it;
another replica follows it live (``GET ?stream=true``, also ``starting_after=N``) with no
gap and no duplicate, and cancels it (the running replica aborts the engine request and
saves ``cancelled``; the call returns the cancelled response)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack

import openai
import pytest
import trio

from tests.reliability.procs import ServerProcess
from tests.support.events import check_stream, joined_text, sdk_events
from tests.support.sdk import strict_sdk

MODEL = "scripted"
# 5 ms a token: about a second of generation, to follow while it runs.
LONG_INPUT = " ".join(f"w{n}" for n in range(150))


@pytest.fixture
def clients(replicas: list[ServerProcess]) -> Iterator[list[openai.OpenAI]]:
    with ExitStack() as stack:
        yield [stack.enter_context(strict_sdk(r.base_url + "/v1", timeout=30))
               for r in replicas]


async def test_another_replica_follows_a_running_response_live(
        clients: list[openai.OpenAI]) -> None:
    a, b, c = clients
    created = a.responses.create(model=MODEL, input=LONG_INPUT, background=True)
    assert b.responses.retrieve(created.id).status in ("queued", "in_progress")

    def follow(client: openai.OpenAI, **after: int) -> list[dict[str, object]]:
        with client.responses.retrieve(created.id, stream=True, **after) as stream:
            return sdk_events(stream)

    results: dict[str, list[dict[str, object]]] = {}

    async def follower(name: str, client: openai.OpenAI, after: int | None) -> None:
        options = {} if after is None else {"starting_after": after}
        results[name] = await trio.to_thread.run_sync(lambda: follow(client, **options))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower, "b", b, None)
        nursery.start_soon(follower, "c", c, 5)
    # Both joined while it ran: it finished after they started reading.
    check_stream(results["b"])
    assert joined_text(results["b"]) == "You said: " + LONG_INPUT
    # The replica that ran it replays the same events, once finished.
    replayed = follow(a)
    assert results["b"] == replayed
    assert results["c"] == [e for e in replayed if int(str(e["sequence_number"])) > 5]
    numbers = [e["sequence_number"] for e in results["b"]]
    assert numbers == list(range(len(numbers)))


def test_cancel_from_another_replica_reaches_the_running_one(
        clients: list[openai.OpenAI], replicas: list[ServerProcess]) -> None:
    a, b, c = clients
    aborted_before = replicas[0].metric("trio_responses_engine_aborts_total", cause="cancel")
    created = a.responses.create(model=MODEL, input="wait [[stall]] forever", background=True)
    # Running on A (seen from C as its saved events show it: queued, then in progress).
    assert c.responses.retrieve(created.id).status in ("queued", "in_progress")
    cancelled = b.responses.cancel(created.id)
    assert cancelled.id == created.id and cancelled.status == "cancelled"
    assert a.responses.retrieve(created.id).model_dump() == cancelled.model_dump()
    # The running replica aborted its engine request.
    assert replicas[0].metric("trio_responses_engine_aborts_total",
                              cause="cancel") == aborted_before + 1
    # Cancelling again anywhere returns it unchanged; a follower gets the whole stream.
    assert c.responses.cancel(created.id).model_dump() == cancelled.model_dump()
    with c.responses.retrieve(created.id, stream=True) as stream:
        events = sdk_events(stream)
    check_stream(events)
    assert events[-1]["type"] == "response.incomplete"


def test_a_get_on_another_replica_shows_the_running_response_so_far(
        clients: list[openai.OpenAI]) -> None:
    """Not the stored ``queued`` row: in progress, with the text streamed so far (the
    running replica's saved events folded in), growing, then the final object."""
    a, b, _ = clients
    created = a.responses.create(model=MODEL, input=LONG_INPUT, background=True)
    final_text = "You said: " + LONG_INPUT
    seen: list[str] = []
    for _ in range(3000):  # each a round trip: well past the ~1 s the response takes
        now = b.responses.retrieve(created.id)
        if now.status == "completed":
            break
        if now.status == "in_progress" and now.output:
            text = now.output_text
            assert final_text.startswith(text), text
            if not seen or text != seen[-1]:
                seen.append(text)
    assert now.status == "completed" and now.output_text == final_text
    # Seen part-way at least twice, each longer than the one before.
    partial = [text for text in seen if text and text != final_text]
    assert len(partial) >= 2, seen
    assert all(len(x) < len(y) for x, y in itertools.pairwise(partial))
