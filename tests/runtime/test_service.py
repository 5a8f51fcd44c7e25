"""ResponseService end to end in process: scripted engine, registry, a real SQLiteStore on
a temporary file (real clock: the store uses threads), and the in-memory store under
MockClock for the timing-sensitive background cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.fakes import RecordingStore, read_all
from tests.support.events import check_stream, joined_text
from tests.support.service import open_service
from trio_responses.errors import EngineUnavailable, InvalidRequest, NotFound
from trio_responses.protocol.request import decode_create_request
from trio_responses.protocol.sse import COMMENT_PING
from trio_responses.runtime.service import ResponseService
from trio_responses.store.sqlite import SQLiteStore

OWNER = "owner-a"


def request(**fields: Any) -> Any:
    return decode_create_request(json.dumps({"model": "scripted", **fields}).encode())


async def finished(service: ResponseService, body: Any, *, stream: bool = False) -> str:
    run = await service.create(body, owner=OWNER, stream=stream)
    await run.done.wait()
    return run.id


# -- the stored chain (SQLite) --------------------------------------------------------


async def test_previous_response_id_chain_builds_the_prompt(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3")) as (service, engine):
        first = await finished(service, request(input="first question",
                                                instructions="Be brief."))
        second = await finished(service, request(input="second", previous_response_id=first,
                                                 instructions="Other rules."))
        third = await finished(service, request(
            input=[{"role": "user", "content": [{"type": "input_text", "text": "third"}]}],
            previous_response_id=second))

        assert [dict(m) for m in engine.requests[0].messages] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"}]
        # Earlier turns' instructions are not carried over; their input and output are.
        assert [dict(m) for m in engine.requests[2].messages] == [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "You said: first question"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "You said: second"},
            {"role": "user", "content": "third"}]

        stored = await service.retrieve(third, OWNER)
        assert stored["status"] == "completed"
        assert stored["previous_response_id"] == second
        assert stored["output"][0]["content"][0]["text"] == "You said: third"
        chain = await service.store.chain(third, OWNER)
        assert chain is not None and [r.id for r in chain] == [first, second, third]


async def test_store_false_is_not_stored(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3")) as (service, engine):
        run = await service.create(request(input="secret", store=False), owner=OWNER,
                                   stream=True)
        frames = await read_all(run.buffer, primary=True)
        events = [f.event for f in frames if f.event is not None]
        check_stream(events)
        assert events[-1]["response"]["store"] is False
        assert joined_text(events) == "You said: secret"
        assert await service.store.get(run.id, OWNER) is None
        with pytest.raises(NotFound) as caught:
            await service.retrieve(run.id, OWNER)
        assert caught.value.param == "response_id"
        with pytest.raises(NotFound) as caught:
            await service.create(request(input="next", previous_response_id=run.id),
                                 owner=OWNER, stream=False)
        assert caught.value.param == "previous_response_id"
        assert len(engine.requests) == 1  # the refused turn never reached the engine


async def test_stored_responses_belong_to_their_owner(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3")) as (service, _):
        mine = await finished(service, request(input="hello"))
        for call in (service.retrieve(mine, "owner-b"), service.delete(mine, "owner-b"),
                     service.create(request(input="x", previous_response_id=mine),
                                    owner="owner-b", stream=False)):
            with pytest.raises(NotFound):
                await call
        assert (await service.retrieve(mine, OWNER))["status"] == "completed"
        assert await service.delete(mine, OWNER) == {"id": mine, "object": "response",
                                                    "deleted": True}
        with pytest.raises(NotFound):
            await service.retrieve(mine, OWNER)
        with pytest.raises(NotFound):
            await service.delete(mine, OWNER)


async def test_input_items_pages(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3")) as (service, _):
        items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
        rid = await finished(service, request(input=items))
        page = await service.input_items(rid, OWNER, limit=2, order="asc", after=None,
                                         before=None)
        texts = [item["content"][0]["text"] for item in page["data"]]
        assert (texts, page["has_more"], page["object"]) == (["m0", "m1"], True, "list")
        rest = await service.input_items(rid, OWNER, limit=10, order="asc",
                                         after=page["last_id"], before=None)
        assert [i["content"][0]["text"] for i in rest["data"]] == ["m2", "m3", "m4"]
        assert rest["has_more"] is False
        desc = await service.input_items(rid, OWNER, limit=1, order="desc", after=None,
                                         before=None)
        assert desc["data"][0]["content"][0]["text"] == "m4"
        assert desc["first_id"] == desc["last_id"] == desc["data"][0]["id"]
        with pytest.raises(InvalidRequest) as caught:
            await service.input_items(rid, OWNER, limit=1, order="asc", after="nope",
                                      before=None)
        assert caught.value.param == "after"


async def test_background_cancel_is_final_and_replayable(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3"), token_delay=0.001) as (
            service, engine):
        run = await service.create(request(input="wait [[stall]]", background=True),
                                   owner=OWNER, stream=False)
        assert (await service.retrieve(run.id, OWNER))["status"] in ("queued", "in_progress")
        cancelled = await service.cancel(run.id, OWNER)
        assert cancelled["status"] == "cancelled"
        assert await service.cancel(run.id, OWNER) == cancelled  # idempotent
        assert engine.aborted == [run.id]
        record = await service.store.get(run.id, OWNER)
        assert record is not None and record.status == "cancelled"

        buffer, cursor = await service.follow(run.id, OWNER, None)
        assert cursor == -1  # a stored log's cursor: the last sequence number sent
        replay = [f.event for f in await read_all(buffer, cursor) if f.event is not None]
        check_stream(replay)
        assert [e["type"] for e in replay[:3]] == ["response.created", "response.queued",
                                                   "response.in_progress"]
        assert replay[-1]["type"] == "response.incomplete"
        assert replay[-1]["response"] == dict(cancelled)

        buffer, cursor = await service.follow(run.id, OWNER, 2)
        resumed = [f.event for f in (await buffer.read(cursor))[0] if f.event is not None]
        check_stream(resumed, resumed_after=2)
        assert resumed == replay[3:]


async def test_foreground_responses_cannot_be_cancelled_or_followed(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3")) as (service, _):
        rid = await finished(service, request(input="hi"))
        with pytest.raises(InvalidRequest) as caught:
            await service.cancel(rid, OWNER)
        assert caught.value.param == "response_id"
        with pytest.raises(InvalidRequest) as caught:
            await service.follow(rid, OWNER, None)
        assert caught.value.param == "stream"


async def test_refusals_before_the_engine(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3"),
                            responses_allowed_service_tiers=("auto", "default")) as (
            service, engine):
        with pytest.raises(NotFound) as caught:
            await service.create(request(input="x", model="other"), owner=OWNER, stream=False)
        assert caught.value.param == "model"
        with pytest.raises(InvalidRequest) as invalid:
            await service.create(request(input="x", service_tier="flex"), owner=OWNER,
                                 stream=False)
        assert invalid.value.param == "service_tier"
        assert engine.requests == []


# -- background runs under MockClock (in-memory store: no threads) ---------------------


async def test_follow_a_live_background_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = RecordingStore()
    async with open_service(store, token_delay=1.0) as (service, _):
        run = await service.create(request(input="one two three four", background=True),
                                   owner=OWNER, stream=False)
        await trio.sleep(2.5)  # three tokens out, three to come
        buffer, cursor = await service.follow(run.id, OWNER, 5)
        assert cursor == 6
        live = [f.event for f in await read_all(buffer, cursor) if f.event is not None]
        full = run.buffer.events()
        check_stream(full)
        assert live == full[6:]
        assert joined_text(full) == "You said: one two three four"
        retrieved = await service.retrieve(run.id, OWNER)
        assert retrieved["status"] == "completed"
        assert store.event_logs[run.id] == full  # the whole log, for replays


async def test_pings_reach_followers_of_a_background_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0,
                            responses_ping_interval_seconds=10) as (service, _):
        run = await service.create(request(input="[[stall]]", background=True), owner=OWNER,
                                   stream=False, ping_events=True)
        await trio.sleep(35)
        assert [e["type"] for e in run.buffer.events()].count("response.ping") == 3
        buffer, cursor = await service.follow(run.id, OWNER, None)
        # The replay leaves out the heartbeats sent before the follower joined …
        frames, cursor = await buffer.read(cursor)
        kinds = [f.event["type"] for f in frames if f.event is not None]
        assert "response.ping" not in kinds and kinds[0] == "response.created"
        # … and the follower gets the heartbeats from then on.
        frames, cursor = await buffer.read(cursor)
        assert [f.event["type"] for f in frames if f.event is not None] == ["response.ping"]
        await service.cancel(run.id, OWNER)
        check_stream(run.buffer.events())


async def test_comment_heartbeats_reach_followers_of_a_background_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0,
                            responses_ping_interval_seconds=10) as (service, _):
        run = await service.create(request(input="[[stall]]", background=True), owner=OWNER,
                                   stream=False)
        await trio.sleep(35)
        assert "response.ping" not in [e["type"] for e in run.buffer.events()]
        buffer, cursor = await service.follow(run.id, OWNER, None)
        # The replay has the events and none of the comments sent before it joined …
        frames, cursor = await buffer.read(cursor)
        assert all(f.event is not None for f in frames)
        # … and the follower gets the next heartbeat, a comment.
        frames, cursor = await buffer.read(cursor)
        assert [f.data for f in frames] == [COMMENT_PING]
        await service.cancel(run.id, OWNER)
        check_stream(run.buffer.events())


async def test_follow_from_a_cursor_beyond_the_live_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0) as (service, _):
        run = await service.create(request(input="one two three", background=True),
                                   owner=OWNER, stream=False)
        # Only created (0) and queued (1) exist yet; ask for what comes after 5.
        buffer, cursor = await service.follow(run.id, OWNER, 5)
        frames = await read_all(buffer, cursor)
        numbers = [f.event["sequence_number"] for f in frames if f.event is not None]
        assert numbers and numbers[0] == 6


async def test_a_turn_cannot_follow_a_running_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0) as (service, engine):
        run = await service.create(request(input="[[stall]]", background=True), owner=OWNER,
                                   stream=False)
        with pytest.raises(InvalidRequest) as caught:
            await service.create(request(input="next", previous_response_id=run.id),
                                 owner=OWNER, stream=False)
        assert caught.value.param == "previous_response_id"
        assert len(engine.requests) == 1
        await service.cancel(run.id, OWNER)


async def test_deleting_a_live_response_ends_it_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = RecordingStore()
    async with open_service(store, token_delay=1.0) as (service, engine):
        run = await service.create(request(input="[[stall]]", background=True), owner=OWNER,
                                   stream=False)
        await trio.sleep(5)
        assert (await service.delete(run.id, OWNER))["deleted"] is True
        assert run.done.is_set() and run.response["status"] == "cancelled"
        assert engine.aborted == [run.id] and run.id not in store.rows
        assert service.registry.get(run.id) is None


async def test_a_failed_store_write_at_create_aborts_the_engine_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class FullDisk(RecordingStore):
        async def create(self, record: Any) -> None:
            raise OSError("disk full")

    async with open_service(FullDisk()) as (service, engine):
        with pytest.raises(OSError):
            await service.create(request(input="hello"), owner=OWNER, stream=False)
        assert engine.aborted == [engine.requests[0].request_id]
        assert engine.statistics().running == 0 and service.registry.live() == []


async def test_queue_bound_refuses_before_the_engine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(RecordingStore(), token_delay=1.0, max_queued_requests=1) as (
            service, engine):
        first = await service.create(request(input="[[stall]]"), owner=OWNER, stream=False)
        with pytest.raises(EngineUnavailable) as caught:
            await service.create(request(input="second"), owner=OWNER, stream=False)
        assert caught.value.status == 503 and caught.value.headers["retry-after"] == "1"
        assert len(engine.requests) == 1
        first.end("cancel")


async def test_a_response_left_running_by_a_dead_process_replays_as_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RELIABILITY row 15, in process: a background row still in_progress (its process
    died before the final write) is failed at start-up, and GET-stream gives the end."""
    store = RecordingStore()
    async with open_service(store, token_delay=1.0) as (service, _):
        run = await service.create(request(input="[[stall]]", background=True), owner=OWNER,
                                   stream=False)
        await trio.sleep(1)
        row = store.rows[run.id]
        run.end("cancel")
    # As if the process had died: the row as it was before the run's final write.
    store.rows[run.id] = row
    async with open_service(store) as (service, _):
        retrieved = await service.retrieve(run.id, OWNER)
        assert retrieved["status"] == "failed"
        buffer, cursor = await service.follow(run.id, OWNER, None)
        replay = [f.event for f in await read_all(buffer, cursor) if f.event is not None]
        assert [e["type"] for e in replay] == ["response.created", "response.failed"]
        assert [e["sequence_number"] for e in replay] == [0, 1]
        assert replay[-1]["response"]["status"] == "failed"


async def test_count_input_tokens_uses_the_whole_prompt(tmp_path: Path) -> None:
    async with open_service(SQLiteStore(tmp_path / "s.sqlite3")) as (service, engine):
        first = await finished(service, request(input="one two three"))
        alone = await service.count_input_tokens(request(input="four"), OWNER)
        chained = await service.count_input_tokens(
            request(input="four", previous_response_id=first), OWNER)
        assert chained > alone > 0
        assert len(engine.requests) == 1  # counting generates nothing
