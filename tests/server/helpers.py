"""Helpers for the server tests: servers with other settings, clients, SSE reading, polling.

Every stream these tests read goes through ``tests.support.events.check_stream``; the
readers here add the SSE framing rules on top (``event:`` equals the payload's ``type``,
never an ``id:`` or ``retry:`` field, ``data: [DONE]`` last and nothing after it).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import openai
import pytest
from httpx_sse import EventSource

from tests.support.events import as_dict
from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore

MODEL = "scripted"
T = TypeVar("T")


# -- servers and clients ------------------------------------------------------------

@contextmanager
def scripted_server_with(
    tmp_path_factory: pytest.TempPathFactory, engine: ScriptedEngine, **settings: Any
) -> Iterator[ServerThread]:
    """Like the shared ``scripted_server`` fixture, with other settings and engine."""
    values: dict[str, Any] = {"engine": "scripted", "port": 0,
                              "responses_ping_interval_seconds": 0, "shutdown_grace_seconds": 2}
    values.update(settings)
    path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    with ServerThread(Settings(**values), engine=engine, store=SQLiteStore(path)) as server:
        yield server


def engine_of(server: ServerThread) -> ScriptedEngine:
    assert isinstance(server.engine, ScriptedEngine)
    return server.engine


def strict_client(server: ServerThread, **options: Any) -> openai.OpenAI:
    """The official SDK in strict mode, no retries (close it: ``with``)."""
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="test",
                         _strict_response_validation=True, max_retries=0, **options)


def http_client(server: ServerThread, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=timeout,
                        headers={"authorization": "Bearer test"})


def on_server(server: ServerThread, fn: Callable[[], T]) -> T:
    """``fn`` run on the server's Trio thread (engine state is only read there)."""
    return server.call(fn)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
               ) -> None:
    """Poll ``predicate`` every 10 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.01)


def aborted(server: ServerThread, response_id: str) -> bool:
    engine = engine_of(server)
    return on_server(server, lambda: response_id in engine.aborted)


def running(server: ServerThread) -> int:
    engine = engine_of(server)
    return on_server(server, lambda: engine.statistics().running)


def wait_status(client: openai.OpenAI, response_id: str, statuses: Iterable[str],
                timeout: float = 5.0) -> list[str]:
    """Retrieve until the status is one of ``statuses``; every status seen, in order."""
    wanted = set(statuses)
    seen: list[str] = []

    def reached() -> bool:
        status = client.responses.retrieve(response_id).status
        assert status is not None
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in wanted

    wait_until(reached, timeout, f"status in {sorted(wanted)} (seen {seen})")
    return seen


# -- errors ------------------------------------------------------------------------

def assert_error(response: httpx.Response, status: int, *, param: str | None,
                 code: str | None = None, type: str = "invalid_request_error"
                 ) -> dict[str, Any]:
    """``response`` is ``status`` with exactly OpenAI's error object; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert list(error) == ["message", "type", "param", "code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["type"] == type, error
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_sdk_error(exc: openai.APIStatusError, status: int, *, param: str | None,
                     code: str | None = None) -> None:
    assert exc.status_code == status, exc
    assert isinstance(exc.body, dict)
    assert exc.body["param"] == param, exc.body
    if code is not None:
        assert exc.body["code"] == code, exc.body


# -- streams -----------------------------------------------------------------------

def sdk_events(stream: Iterable[Any]) -> list[dict[str, Any]]:
    """The events of an SDK stream, as wire JSON."""
    return [as_dict(event) for event in stream]


class SSEReader:
    """Events read with httpx-sse from one response, framing checked, in as many
    ``take`` calls as the test needs (a live stream is read, then acted on, then read)."""

    def __init__(self, source: EventSource) -> None:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        self._sse = source.iter_sse()
        self.done = False

    def take(self, count: int | None = None) -> list[dict[str, Any]]:
        """The next ``count`` events, or all of them up to ``data: [DONE]``."""
        events: list[dict[str, Any]] = []
        while count is None or len(events) < count:
            sse = next(self._sse, None)
            if sse is None:
                break
            assert not self.done, f"data after [DONE]: {sse}"
            # httpx-sse reports the last event id seen; "" means no id: line ever came.
            assert sse.id == "" and sse.retry is None, sse
            if sse.data == "[DONE]":
                assert sse.event == "message", sse  # a bare data: line, no event: field
                self.done = True
                continue
            event = json.loads(sse.data)
            assert sse.event == event["type"], (sse.event, event["type"])
            events.append(event)
        if count is None:
            assert self.done, "the stream ended without data: [DONE]"
        return events


def read_sse(source: EventSource, *, count: int | None = None) -> list[dict[str, Any]]:
    """All events up to ``data: [DONE]``, or only the first ``count`` (the caller then
    closes the connection)."""
    return SSEReader(source).take(count)


_FRAME = re.compile(rb"event: (?P<type>[a-z_.]+)\ndata: (?P<data>[^\n]+)\n\n|: [^\n]*\n\n")


def parse_raw_sse(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    """Events and comment count of a whole SSE body, byte for byte: only
    ``event:``+``data:`` pairs and ``:`` comments, each ended by one blank line, then
    ``data: [DONE]``; nothing else (no ``id:``, no ``retry:``, no ``\\r``)."""
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-200:]
    body = raw[: -len(b"data: [DONE]\n\n")]
    events: list[dict[str, Any]] = []
    comments = 0
    position = 0
    while position < len(body):
        match = _FRAME.match(body, position)
        assert match is not None, body[position:position + 200]
        if match.group("type") is None:
            comments += 1
        else:
            event = json.loads(match.group("data"))
            assert event["type"].encode() == match.group("type"), match.group(0)[:200]
            events.append(event)
        position = match.end()
    return events, comments


def types_of(events: Iterable[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]
