"""The Conversations API's routes (``/v1/conversations``): parse, call the service, write
JSON. No business logic: that is ``runtime/conversations.py``.

Authentication, headers and errors are the app's, as for every route (``routes.py``).
Each call is counted against its key's requests per minute and runs in one of the key's
read slots (``ResponseService.reading``), as the responses' reads are; an items append,
which may wait for the conversation's turn, is only counted.
"""

from __future__ import annotations

from quart import Response, g, request
from quart_trio import QuartTrio

from ..protocol.conversations_api import (
    decode_add_items,
    decode_create_conversation,
    decode_update_conversation,
)
from .json_io import json_response, query_include, query_int, query_order, read_body
from .state import AppState


def register_conversation_routes(app: QuartTrio, state: AppState) -> None:
    @app.post("/v1/conversations")
    async def create_conversation() -> Response:
        items, metadata = decode_create_conversation(await read_body())
        async with state.service.reading(g.owner):
            return json_response(await state.service.conversations.create(items, metadata,
                                                                          g.owner))

    @app.get("/v1/conversations/<conversation_id>")
    async def retrieve_conversation(conversation_id: str) -> Response:
        async with state.service.reading(g.owner):
            return json_response(await state.service.conversations.retrieve(
                conversation_id, g.owner))

    @app.post("/v1/conversations/<conversation_id>")
    async def update_conversation(conversation_id: str) -> Response:
        metadata = decode_update_conversation(await read_body())
        async with state.service.reading(g.owner):
            return json_response(await state.service.conversations.update(
                conversation_id, g.owner, metadata))

    @app.delete("/v1/conversations/<conversation_id>")
    async def delete_conversation(conversation_id: str) -> Response:
        async with state.service.reading(g.owner):
            return json_response(await state.service.conversations.delete(
                conversation_id, g.owner))

    @app.post("/v1/conversations/<conversation_id>/items")
    async def add_items(conversation_id: str) -> Response:
        include = query_include()
        items = decode_add_items(await read_body())
        # Counted, but in no read slot: it may wait for the conversation's turn.
        state.service.count_request(g.owner)
        return json_response(await state.service.conversations.add_items(
            conversation_id, g.owner, items, include))

    @app.get("/v1/conversations/<conversation_id>/items")
    async def list_items(conversation_id: str) -> Response:
        after, limit = request.args.get("after"), query_int("limit", 20, 1, 100)
        order, include = query_order(), query_include()
        async with state.service.reading(g.owner):
            page = await state.service.conversations.list_items(
                conversation_id, g.owner, after=after, limit=limit, order=order,
                include=include)
        return json_response(page)

    @app.get("/v1/conversations/<conversation_id>/items/<item_id>")
    async def retrieve_item(conversation_id: str, item_id: str) -> Response:
        include = query_include()
        async with state.service.reading(g.owner):
            return json_response(await state.service.conversations.retrieve_item(
                conversation_id, g.owner, item_id, include))

    @app.delete("/v1/conversations/<conversation_id>/items/<item_id>")
    async def delete_item(conversation_id: str, item_id: str) -> Response:
        async with state.service.reading(g.owner):
            return json_response(await state.service.conversations.delete_item(
                conversation_id, g.owner, item_id))
