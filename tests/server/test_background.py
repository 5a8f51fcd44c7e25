"""Background responses: the lifecycle, /cancel, and resuming a stream by id
(``GET /v1/responses/{id}?stream=true&starting_after=N``), with the strict SDK."""

from __future__ import annotations

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from tests.server.helpers import MODEL, aborted, types_of, wait_status
from tests.support.errors import assert_openai_error, assert_sdk_error
from tests.support.events import check_stream, joined_text, sdk_events
from tests.support.server import ServerThread, run_ended
from tests.support.sse import SSEReader, read_sse
from tests.support.waiting import wait_until

TERMINAL = {"completed", "failed", "incomplete", "cancelled"}
# 5 ms a token: about 0.2 s of generation, long enough to join while it runs.
LONG_INPUT = " ".join(f"w{n}" for n in range(40))



def test_background_runs_to_completion(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="in the background one two three",
                                      background=True, store=True)
    assert created.background is True
    assert created.status in ("queued", "in_progress")
    seen = wait_status(client, created.id, TERMINAL)
    order = ["queued", "in_progress", "completed"]
    assert seen[-1] == "completed"
    assert [order.index(status) for status in seen] == sorted(order.index(s) for s in seen)
    final = client.responses.retrieve(created.id)
    assert final.output_text == "You said: in the background one two three"
    assert final.usage is not None and final.usage.output_tokens == 8


def test_background_stream_from_create(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="streamed background", background=True,
                                 store=True) as stream:
        events = sdk_events(stream)
    check_stream(events)
    assert types_of(events)[:3] == ["response.created", "response.queued",
                                    "response.in_progress"]
    assert events[0]["response"]["status"] == "queued"
    assert joined_text(events) == "You said: streamed background"


def test_cancel_background(client: openai.OpenAI, scripted_server: ServerThread) -> None:
    created = client.responses.create(model=MODEL, input="wait [[stall]] forever",
                                      background=True, store=True)
    wait_status(client, created.id, {"in_progress"})
    wait_until(lambda: bool(client.responses.retrieve(created.id).output), what="first token")
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled" and cancelled.id == created.id
    assert aborted(scripted_server, created.id)
    again = client.responses.cancel(created.id)
    assert again.model_dump() == cancelled.model_dump()
    # Nothing is left that could still write (no late engine result may overwrite
    # "cancelled"): the run has ended and left the registry.
    wait_until(lambda: run_ended(scripted_server, created.id), what="the run's end")
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.status == "cancelled"
    assert retrieved.model_dump() == cancelled.model_dump()
    # The stored event log ends the stream too, on the SDK's terms.
    with client.responses.stream(response_id=created.id) as stream:
        events = sdk_events(stream)
    check_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["status"] == "cancelled"


def test_cancel_queued_background_before_it_runs(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="[[stall]]", background=True,
                                      store=True)
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"


def test_cancel_finished_background_returns_it_unchanged(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="quick", background=True, store=True)
    wait_status(client, created.id, TERMINAL)
    done = client.responses.retrieve(created.id)
    assert done.status == "completed"
    assert client.responses.cancel(created.id).model_dump() == done.model_dump()


def test_cancel_foreground_is_400(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input="foreground")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(created.id)
    assert_sdk_error(caught.value, 400, param="response_id")
    assert client.responses.retrieve(created.id).status == "completed"
    assert_openai_error(http.post("/v1/responses/resp_missing/cancel"), 404,
                        param="response_id", type="invalid_request_error")


def test_background_without_store_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="x", background=True, store=False)
    assert_sdk_error(caught.value, 400, param="background")


def test_delete_running_background(client: openai.OpenAI, scripted_server: ServerThread
                                   ) -> None:
    created = client.responses.create(model=MODEL, input="[[stall]]", background=True,
                                      store=True)
    wait_status(client, created.id, {"in_progress"})
    client.responses.delete(created.id)
    assert aborted(scripted_server, created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


# -- resume --------------------------------------------------------------------------

def test_resume_after_n_follows_live(client: openai.OpenAI, http: httpx.Client,
                                     scripted_server: ServerThread) -> None:
    created = client.responses.create(model=MODEL, input="[[stall]] after one token",
                                      background=True, store=True)
    wait_until(lambda: len(client.responses.retrieve(created.id).output) == 1,
               what="the first token")
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true", "starting_after": "2"}) as source:
        reader = SSEReader(source)
        replayed = reader.take(3)
        assert types_of(replayed) == ["response.output_item.added",
                                      "response.content_part.added",
                                      "response.output_text.delta"]
        # Everything from here on happens after the reader joined.
        client.responses.cancel(created.id)
        events = replayed + reader.take()
    check_stream(events, resumed_after=2)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["status"] == "cancelled"
    assert aborted(scripted_server, created.id)


def test_resume_after_n_to_completion(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input=LONG_INPUT, background=True,
                                      store=True)
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true", "starting_after": "2"}) as source:
        events = read_sse(source)
    check_stream(events, resumed_after=2)
    assert types_of(events)[0] == "response.output_item.added"
    assert events[-1]["type"] == "response.completed"
    final = client.responses.retrieve(created.id)
    assert joined_text(events) == final.output_text == "You said: " + LONG_INPUT


def test_resume_without_starting_after_replays_from_created(client: openai.OpenAI,
                                                            http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input=LONG_INPUT, background=True,
                                      store=True)
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true"}) as source:
        live = read_sse(source)
    check_stream(live)
    assert types_of(live)[:3] == ["response.created", "response.queued",
                                  "response.in_progress"]
    # Once finished, the same events come from the store, from anywhere.
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true"}) as source:
        assert read_sse(source) == live
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true", "starting_after": "7"}) as source:
        tail = read_sse(source)
    check_stream(tail, resumed_after=7)
    assert tail == live[8:]
    last = live[-1]["sequence_number"]
    with connect_sse(http, "GET", f"/v1/responses/{created.id}",
                     params={"stream": "true", "starting_after": str(last)}) as source:
        assert read_sse(source) == []


def test_resume_with_the_sdk(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input=LONG_INPUT, background=True,
                                      store=True)
    with client.responses.stream(response_id=created.id, starting_after=4) as stream:
        events = sdk_events(stream)
        final = stream.get_final_response()
    check_stream(events, resumed_after=4)
    assert final.status == "completed" and final.id == created.id
    # retrieve(stream=True): the raw event stream, from response.created.
    with client.responses.retrieve(created.id, stream=True) as raw_stream:
        replayed = sdk_events(raw_stream)
    check_stream(replayed)
    # (The SDK's stream helper adds snapshots and parsed fields to its events.)
    assert [(e["sequence_number"], e["type"]) for e in replayed[5:]] == [
        (e["sequence_number"], e["type"]) for e in events]
    assert joined_text(replayed) == final.output_text
    # retrieve(stream=True, starting_after=N): the server skips, not the client.
    with client.responses.retrieve(created.id, stream=True, starting_after=4) as tail_stream:
        tail = sdk_events(tail_stream)
    check_stream(tail, resumed_after=4)
    assert tail == replayed[5:]


def test_resume_two_readers_at_once(http: httpx.Client) -> None:
    created = http.post("/v1/responses", json={"model": MODEL, "input": LONG_INPUT,
                                               "background": True, "store": True}).json()
    url = f"/v1/responses/{created['id']}"
    with connect_sse(http, "GET", url, params={"stream": "true"}) as first, \
            http_client_like(http) as other, \
            connect_sse(other, "GET", url, params={"stream": "true",
                                                   "starting_after": "3"}) as second:
        one = read_sse(first)
        two = read_sse(second)
    check_stream(one)
    check_stream(two, resumed_after=3)
    assert two == one[4:]


def http_client_like(http: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=http.base_url, timeout=http.timeout, headers=http.headers)


def test_resume_foreground_is_400(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input="foreground")
    assert_openai_error(http.get(f"/v1/responses/{created.id}", params={"stream": "true"}),
                        400, param="stream", type="invalid_request_error")


@pytest.mark.parametrize("value", ["x", "-2", "1.5"])
def test_resume_bad_starting_after(client: openai.OpenAI, http: httpx.Client,
                                   value: str) -> None:
    created = client.responses.create(model=MODEL, input="bg", background=True, store=True)
    response = http.get(f"/v1/responses/{created.id}",
                        params={"stream": "true", "starting_after": value})
    assert_openai_error(response, 400, param="starting_after", type="invalid_request_error")
