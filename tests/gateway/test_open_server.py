"""A server with no API key (issue 13, finding 8): what a web page in the user's own
browser can make it do.

The probes: a cross-site ``POST`` with ``Content-Type: text/plain;charset=json`` (which
a browser sends without asking the server first: no CORS preflight) created a response;
and any ``Host`` was answered, so a page on a name of the attacker's that resolves to
127.0.0.1 (DNS rebinding) could read the answers too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.errors import assert_openai_error
from tests.support.server import ServerThread, engine_of, serve_scripted

from .helpers import MODEL, address, http, raw_connect, read_body, read_response_head

BODY = json.dumps({"model": MODEL, "input": "made by a web page"}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory) as server:
        yield server


def submitted(server: ServerThread) -> int:
    return server.call(lambda: len(engine_of(server).requests))


@pytest.mark.parametrize("content_type", [
    "text/plain;charset=json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", None])
def test_a_body_a_browser_sends_unasked_creates_nothing(server: ServerThread,
                                                        content_type: str | None) -> None:
    before = submitted(server)
    headers = {} if content_type is None else {"content-type": content_type}
    with http(server) as client:
        response = client.post("/v1/responses", content=BODY, headers=headers)
        assert_openai_error(response, 415, code="unsupported_media_type", param=None)
        tokens = client.post("/v1/responses/input_tokens", content=BODY, headers=headers)
        assert_openai_error(tokens, 415, code="unsupported_media_type")
    assert submitted(server) == before


def test_json_with_parameters_is_json(server: ServerThread) -> None:
    with http(server) as client:
        for content_type in ("application/json", "application/json; charset=utf-8",
                             "Application/JSON;charset=UTF-8"):
            response = client.post("/v1/responses", content=BODY,
                                   headers={"content-type": content_type})
            assert response.status_code == 200, (content_type, response.text)


def get_with_host(server: ServerThread, host: str) -> tuple[int, dict[str, object]]:
    with raw_connect(server) as sock:
        sock.sendall(f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, headers, rest = read_response_head(sock)
        return status, json.loads(read_body(sock, headers, rest))


def test_only_its_own_hosts_are_answered(server: ServerThread) -> None:
    port = address(server)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example",
                 "localhost.evil.example", "xn--80ak6aa92e.com"):
        status, body = get_with_host(server, host)
        assert status == 421, (host, body)
        assert body["error"]["code"] == "invalid_host"  # type: ignore[index]
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.",
                 "api.localhost", f"[::1]:{port}", "10.1.2.3:80", "[fe80::1]"):
        status, body = get_with_host(server, host)
        assert status == 200, (host, body)


@pytest.fixture(scope="module")
def allowing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory,
                        allowed_hosts=("api.example.com", ".corp.example")) as server:
        yield server


def test_allowed_hosts_add_names(allowing: ServerThread) -> None:
    for host in ("api.example.com", "API.example.com:8000", "corp.example", "a.b.corp.example",
                 "localhost", "127.0.0.1"):
        assert get_with_host(allowing, host)[0] == 200, host
    for host in ("example.com", "other.example.com", "corp.example.evil"):
        assert get_with_host(allowing, host)[0] == 421, host


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, api_keys=("k1",)) as server:
        yield server


def test_a_server_with_keys_answers_any_host(keyed: ServerThread) -> None:
    """A page cannot send the key it does not have: keys are the protection there."""
    with raw_connect(keyed) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: api.example.com\r\n"
                     b"Authorization: Bearer k1\r\n\r\n")
        status, _, _ = read_response_head(sock)
    assert status == 200
