"""previous_response_id: earlier turns' inputs and outputs become the next prompt, in
order; instructions are not carried over. Asserted on what the scripted engine received."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai
import pytest

from tests.server.helpers import MODEL, on_server
from tests.support.errors import assert_sdk_error
from tests.support.events import check_stream, sdk_events
from tests.support.server import ServerThread, engine_of
from tests.support.waiting import wait_until


def prompt_of(server: ServerThread, response_id: str) -> list[dict[str, Any]]:
    """The chat messages the engine got for ``response_id`` (its engine request id)."""
    engine = engine_of(server)
    requests = on_server(server, lambda: [r for r in engine.requests
                                          if r.request_id == response_id])
    assert len(requests) == 1, requests
    return [{"role": m["role"], "content": m["content"]} for m in requests[0].messages]


def message(role: str, content: str) -> Mapping[str, str]:
    return {"role": role, "content": content}


def test_three_turn_chain(client: openai.OpenAI, scripted_server: ServerThread) -> None:
    first = client.responses.create(model=MODEL, input="alpha", instructions="first rules")
    assert prompt_of(scripted_server, first.id) == [
        message("system", "first rules"), message("user", "alpha")]

    second = client.responses.create(model=MODEL, input="beta", instructions="second rules",
                                     previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.instructions == "second rules"
    assert prompt_of(scripted_server, second.id) == [
        message("system", "second rules"),
        message("user", "alpha"), message("assistant", "You said: alpha"),
        message("user", "beta")]

    with client.responses.stream(model=MODEL, input="gamma",
                                 previous_response_id=second.id) as stream:
        events = sdk_events(stream)
        third = stream.get_final_response()
    check_stream(events)
    assert third.previous_response_id == second.id and third.instructions is None
    assert third.output_text == "You said: gamma"
    assert prompt_of(scripted_server, third.id) == [
        message("user", "alpha"), message("assistant", "You said: alpha"),
        message("user", "beta"), message("assistant", "You said: beta"),
        message("user", "gamma")]


def test_chain_carries_item_inputs(client: openai.OpenAI, scripted_server: ServerThread
                                   ) -> None:
    first = client.responses.create(model=MODEL, input=[
        {"role": "developer", "content": "dev note"},
        {"role": "user", "content": [{"type": "input_text", "text": "part one"},
                                     {"type": "input_text", "text": " part two"}]},
    ])
    second = client.responses.create(model=MODEL, input=[{"role": "user", "content": "next"}],
                                     previous_response_id=first.id)
    assert prompt_of(scripted_server, second.id) == [
        message("system", "dev note"), message("user", "part one part two"),
        message("assistant", "You said: part one part two"), message("user", "next")]


def test_branching_from_the_same_turn(client: openai.OpenAI, scripted_server: ServerThread
                                      ) -> None:
    root = client.responses.create(model=MODEL, input="root")
    left = client.responses.create(model=MODEL, input="left", previous_response_id=root.id)
    right = client.responses.create(model=MODEL, input="right", previous_response_id=root.id)
    history = [message("user", "root"), message("assistant", "You said: root")]
    assert prompt_of(scripted_server, left.id) == [*history, message("user", "left")]
    assert prompt_of(scripted_server, right.id) == [*history, message("user", "right")]


def test_unknown_previous_response(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_missing")
    assert_sdk_error(caught.value, 404, param="previous_response_id",
                     code="previous_response_not_found")


def test_unstored_previous_response(client: openai.OpenAI) -> None:
    unstored = client.responses.create(model=MODEL, input="forget me", store=False)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=MODEL, input="x", previous_response_id=unstored.id)
    assert_sdk_error(caught.value, 404, param="previous_response_id")


def test_deleted_previous_response(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="to delete")
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="x", previous_response_id=first.id)


def test_chain_waits_for_a_finished_turn(client: openai.OpenAI, scripted_server: ServerThread
                                         ) -> None:
    running = client.responses.create(model=MODEL, input="[[stall]] midway", background=True,
                                      store=True)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="too early",
                                previous_response_id=running.id)
    assert_sdk_error(caught.value, 400, param="previous_response_id")
    wait_until(lambda: bool(client.responses.retrieve(running.id).output),
               what="the first token")
    cancelled = client.responses.cancel(running.id)
    assert cancelled.status == "cancelled" and cancelled.output_text == "You"
    # A cancelled turn is final: the next turn builds on what it had written.
    after = client.responses.create(model=MODEL, input="after", previous_response_id=running.id)
    assert after.status == "completed"
    assert prompt_of(scripted_server, after.id) == [
        message("user", "[[stall]] midway"), message("assistant", "You"),
        message("user", "after")]
