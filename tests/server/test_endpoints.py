"""The endpoints over real HTTP with the strict openai SDK: create (JSON and stream),
retrieve, delete, input_items paging, store=false, unknown routes and methods."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from tests.server.helpers import MODEL, types_of
from tests.support.errors import assert_openai_error, assert_sdk_error
from tests.support.events import check_stream, joined_text, sdk_events


def five_messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"message {n}"} for n in range(5)]


def test_create_json(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="hello there", metadata={"k": "v"},
                                       max_output_tokens=50, temperature=0.5)
    assert isinstance(response, Response)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None
    assert response.output_text == "You said: hello there"
    assert response.model == MODEL and response.metadata == {"k": "v"}
    assert response.max_output_tokens == 50 and response.temperature == 0.5
    assert response.background is False and response.store is True
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None
    assert response.usage.output_tokens == 4  # "You", " said:", " hello", " there"
    assert response.usage.total_tokens == response.usage.input_tokens + 4


def test_create_stream_with_the_sdk(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="one two three") as stream:
        events = sdk_events(stream)
        final = stream.get_final_response()
    check_stream(events)
    assert types_of(events)[:2] == ["response.created", "response.in_progress"]
    assert types_of(events)[-1] == "response.completed"
    assert joined_text(events) == final.output_text == "You said: one two three"
    assert final.status == "completed"
    stored = client.responses.retrieve(final.id)
    assert (stored.status, stored.output_text, stored.usage) == (
        final.status, final.output_text, final.usage)
    assert [item.id for item in stored.output] == [item.id for item in final.output]


def test_create_stream_true(client: openai.OpenAI) -> None:
    stream = client.responses.create(model=MODEL, input="streamed", stream=True)
    with stream:
        events = sdk_events(stream)
    check_stream(events)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "You said: streamed"


def test_retrieve_matches_create(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="keep me", instructions="be brief")
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert retrieved.instructions == "be brief"


def test_delete_then_gone(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input="short lived")
    deleted = http.delete(f"/v1/responses/{created.id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(created.id)
    assert_sdk_error(caught.value, 404, param="response_id")
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(created.id)
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/input_items")):
        assert_openai_error(http.request(method, f"/v1/responses/{created.id}{path}"), 404,
                            param="response_id", type="invalid_request_error")


def test_delete_with_the_sdk(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="delete me")
    assert client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_unknown_response_is_404(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/responses/resp_missing"), 404, param="response_id",
                        type="invalid_request_error")


def test_store_false_is_not_retrievable(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input="ephemeral", store=False)
    assert created.status == "completed" and created.store is False
    assert created.output_text == "You said: ephemeral"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    assert_openai_error(http.get(f"/v1/responses/{created.id}/input_items"), 404,
                        param="response_id", type="invalid_request_error")
    assert_openai_error(http.delete(f"/v1/responses/{created.id}"), 404, param="response_id",
                        type="invalid_request_error")


def test_store_false_stream_is_not_retrievable(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="ephemeral stream", store=False) as stream:
        events = sdk_events(stream)
    check_stream(events)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(events[0]["response"]["id"])


# -- input items ---------------------------------------------------------------------

def test_input_items_default_page(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input=five_messages())
    page = http.get(f"/v1/responses/{created.id}/input_items").json()
    assert list(page) == ["object", "data", "first_id", "last_id", "has_more"]
    assert page["object"] == "list" and page["has_more"] is False
    texts = [item["content"][0]["text"] for item in page["data"]]
    assert texts == [f"message {n}" for n in reversed(range(5))]  # default order: desc
    assert page["first_id"] == page["data"][0]["id"]
    assert page["last_id"] == page["data"][-1]["id"]
    assert all(item["type"] == "message" and item["role"] == "user" for item in page["data"])
    assert len({item["id"] for item in page["data"]}) == 5


def test_input_items_paging(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(model=MODEL, input=five_messages())
    url = f"/v1/responses/{created.id}/input_items"
    everything = http.get(url, params={"order": "asc"}).json()["data"]
    ids = [item["id"] for item in everything]
    assert [item["content"][0]["text"] for item in everything] == [
        f"message {n}" for n in range(5)]

    def page(**params: Any) -> dict[str, Any]:
        response = http.get(url, params=params)
        assert response.status_code == 200, response.text
        value: dict[str, Any] = response.json()
        return value

    first = page(limit=2, order="asc")
    assert [i["id"] for i in first["data"]] == ids[:2] and first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == (ids[0], ids[1])
    second = page(limit=2, order="asc", after=first["last_id"])
    assert [i["id"] for i in second["data"]] == ids[2:4] and second["has_more"] is True
    third = page(limit=2, order="asc", after=second["last_id"])
    assert [i["id"] for i in third["data"]] == ids[4:] and third["has_more"] is False
    assert (third["first_id"], third["last_id"]) == (ids[4], ids[4])

    desc = page(limit=3)
    assert [i["id"] for i in desc["data"]] == ids[::-1][:3] and desc["has_more"] is True
    after_desc = page(limit=3, after=desc["last_id"])
    assert [i["id"] for i in after_desc["data"]] == ids[::-1][3:]
    assert after_desc["has_more"] is False

    before = page(order="asc", before=ids[3])
    assert [i["id"] for i in before["data"]] == ids[:3] and before["has_more"] is False
    window = page(order="asc", after=ids[0], before=ids[4], limit=2)
    assert [i["id"] for i in window["data"]] == ids[1:3] and window["has_more"] is True
    empty = page(order="asc", after=ids[4])
    assert empty["data"] == [] and empty["has_more"] is False
    assert empty["first_id"] is None and empty["last_id"] is None

    full = page(limit=100, order="desc")
    assert [i["id"] for i in full["data"]] == ids[::-1]


def test_input_items_with_the_sdk(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input=five_messages())
    page = client.responses.input_items.list(created.id, limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more is True
    everything = list(client.responses.input_items.list(created.id, limit=2, order="asc"))
    assert [item.content[0].text for item in everything  # type: ignore[union-attr]
            ] == [f"message {n}" for n in range(5)]
    newest_first = list(client.responses.input_items.list(created.id, limit=3))
    assert [item.id for item in newest_first] == [item.id for item in everything][::-1]


@pytest.mark.parametrize("params, param", [
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"order": "sideways"}, "order"),
    ({"after": "msg_missing"}, "after"),
    ({"before": "msg_missing"}, "before"),
])
def test_input_items_bad_query(client: openai.OpenAI, http: httpx.Client,
                               params: dict[str, Any], param: str) -> None:
    created = client.responses.create(model=MODEL, input="x")
    response = http.get(f"/v1/responses/{created.id}/input_items", params=params)
    assert_openai_error(response, 400, param=param, type="invalid_request_error")


def test_input_items_keep_given_ids_and_item_kinds(client: openai.OpenAI) -> None:
    given: list[Any] = [
        {"type": "message", "id": "msg_given", "role": "developer",
         "content": [{"type": "input_text", "text": "rules"}]},
        {"type": "message", "role": "assistant", "content": "earlier answer"},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"role": "user", "content": "and now?"},
    ]
    created = client.responses.create(model=MODEL, input=given)
    items = list(client.responses.input_items.list(created.id, order="asc"))
    assert [item.type for item in items] == [
        "message", "message", "function_call", "function_call_output", "message"]
    assert items[0].id == "msg_given"
    assert all(item.id for item in items)


# -- routes --------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/nothing-here"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/"),
    ("GET", "/v1/responses/resp_1/nothing"),
])
def test_unknown_route_is_404_json(http: httpx.Client, method: str, path: str) -> None:
    assert_openai_error(http.request(method, path), 404, param=None,
                        type="invalid_request_error")


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/responses"),
    ("PUT", "/v1/responses"),
    ("DELETE", "/v1/models"),
    ("POST", "/health"),
    ("GET", "/v1/responses/resp_1/cancel"),
])
def test_wrong_method_is_405_json(http: httpx.Client, method: str, path: str) -> None:
    assert_openai_error(http.request(method, path), 405, param=None,
                        type="invalid_request_error")


def test_models_and_health(client: openai.OpenAI, http: httpx.Client) -> None:
    models = client.models.list()
    assert [model.id for model in models] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("other-model")
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_the_response_reports_the_models_sampling_defaults(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A model whose generation config sets its sampling and output limit: a request that
    leaves them unset is told what it got and stops at the model's limit; one that sets
    them, its own."""
    from tests.support.sdk import strict_sdk
    from tests.support.server import serve_scripted
    from trio_responses.engine.scripted import ScriptedEngine

    engine = ScriptedEngine(model_name=MODEL, sampling_defaults={
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 3})
    text = "one two three four five"
    with serve_scripted(tmp_path_factory, engine) as server, strict_sdk(server) as client:
        unset = client.responses.create(model=MODEL, input=text)
        given = client.responses.create(model=MODEL, input=text, temperature=0.7, top_p=1.0,
                                        max_output_tokens=50)
    assert (unset.temperature, unset.top_p) == (0.2, 0.9)
    assert unset.status == "incomplete" and unset.usage is not None
    assert unset.usage.output_tokens == 3 and unset.max_output_tokens is None
    assert (given.temperature, given.top_p) == (0.7, 1.0)
    assert given.status == "completed" and given.output_text == f"You said: {text}"
