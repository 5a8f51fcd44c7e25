"""WebSocket mode helpers: a raw socket to a test server, and the checks every event read
over a socket gets.

Every server event is parsed by the openai SDK's own WebSocket event models
(``ResponsesServerEvent``, strict pydantic validation); a lane's response events, with
their ``stream_id`` taken off, also pass :func:`tests.support.events.check_stream`, the
checks every SSE stream gets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pydantic
import pytest
from openai.lib.responses_websocket import ResponsesWebSocketLimits
from openai.types.responses.responses_server_event import ResponsesServerEvent
from websockets.sync.client import ClientConnection, connect

from tests.support.events import EXTRA_TYPES, TERMINAL, check_stream
from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.base import EngineRequest
from trio_responses.engine.scripted import ScriptedEngine, echo_reply, last_user_text

_server_event: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponsesServerEvent)

# The API key of the socket test servers.
KEY = "k1"
# The SDK session's own budgets (required): room for a few long responses.
SDK_LIMITS = ResponsesWebSocketLimits(max_lanes=8, max_events_per_lane=8192,
                                      max_events=32768, max_bytes_per_lane=64 << 20,
                                      max_bytes=128 << 20)


def long_or_echo(words: int) -> Callable[[EngineRequest], str]:
    """A scripted reply: ``[[long]]`` in the input gets ``words`` words (long enough to
    still run when a test acts on it), anything else the echo."""
    def reply(request: EngineRequest) -> str:
        if "[[long]]" in last_user_text(request):
            return " ".join(f"w{i}" for i in range(words))
        return echo_reply(request)
    return reply


def socket_server(tmp_path_factory: pytest.TempPathFactory, *, long_words: int,
                  token_delay: float) -> ServerThread:
    """A scripted server (started by ``with``) for the socket tests, API key :data:`KEY`."""
    engine = ScriptedEngine(reply=long_or_echo(long_words), token_delay=token_delay,
                            step_pacing=True)
    return serve_scripted(tmp_path_factory, engine, api_keys=[KEY])


def create_event(text: Any, stream_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A ``response.create`` client event for the scripted model (on lane ``stream_id``)."""
    event = {"type": "response.create", "model": "scripted", "input": text, **fields}
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


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
