"""WebSocket mode helpers: a raw socket to a test server, and the checks every event read
over a socket gets.

Every server event is parsed by the openai SDK's own WebSocket event models
(``ResponsesServerEvent``, strict pydantic validation); a lane's response events, with
their ``stream_id`` taken off, also pass :func:`tests.support.events.check_stream`, the
checks every SSE stream gets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pydantic
from openai.types.responses.responses_server_event import ResponsesServerEvent
from websockets.sync.client import ClientConnection, connect

from tests.support.events import EXTRA_TYPES, TERMINAL, check_stream
from tests.support.server import ServerThread

_server_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponsesServerEvent)


def socket_url(server: ServerThread, path: str = "/v1/responses") -> str:
    return server.base_url.replace("http://", "ws://", 1) + path


def open_socket(server: ServerThread, api_key: str | None = "test",
                path: str = "/v1/responses", headers: dict[str, str] | None = None,
                **options: Any) -> ClientConnection:
    """A socket to ``path`` (``max_size=None``: events of any size, as the SDK's docs
    advise), with ``api_key`` as its bearer token and ``headers``."""
    sent = {} if api_key is None else {"authorization": f"Bearer {api_key}"}
    return connect(socket_url(server, path), additional_headers={**sent, **(headers or {})},
                   max_size=None, **options)


def parse_server_event(event: dict[str, Any]) -> Any:
    """The event as the SDK types it (our extension events, which the SDK passes on
    untyped, are skipped); raises where it does not fit the SDK's models."""
    if event["type"] in EXTRA_TYPES:
        return None
    return _server_event.validate_python(event)


def receive(socket: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    """The next server event, checked against the SDK's models."""
    message = socket.recv(timeout=timeout)
    assert isinstance(message, str), "server events are text messages"
    event: dict[str, Any] = json.loads(message)
    parse_server_event(event)
    return event


def send(socket: ClientConnection, event: dict[str, Any]) -> None:
    socket.send(json.dumps(event))


def check_lane(events: Sequence[dict[str, Any]], stream_id: str | None) -> None:
    """One response's events on one lane: each with the lane's stream_id (none on the
    default lane), and as a whole a well-formed stream."""
    for event in events:
        assert event.get("stream_id") == stream_id, event["type"]
    check_stream([{k: v for k, v in e.items() if k != "stream_id"} for e in events])


def is_terminal(event: dict[str, Any]) -> bool:
    return event["type"] in TERMINAL
