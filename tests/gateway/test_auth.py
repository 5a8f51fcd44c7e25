"""API keys: 401 in OpenAI's shape for every bad credential, on every route but /health,
and stored responses visible only to the key that created them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.errors import assert_openai_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted
from trio_responses import Settings, create_app
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore

from .helpers import MODEL, http, raw_connect, read_body, read_response_head, request_head

KEYS = ("k1", "k2")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, api_keys=KEYS) as server:
        yield server


# The Authorization header sent (None: none at all).
BAD_CREDENTIALS: dict[str, bytes | None] = {
    "missing": None,
    "basic": b"Basic k1",
    "basic-base64": b"Basic azE6",
    "empty-bearer": b"Bearer",
    "no-scheme": b"k1",
    "wrong-key": b"Bearer k3",
    "wrong-length": b"Bearer k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1k1",
    "prefix-of-key": b"Bearer k",
    "key-plus-suffix": b"Bearer k1x",
    "non-ascii": "Bearer k\u00e9".encode(),
    "latin-1-byte": b"Bearer k1\xff",
    # Whitespace to Unicode, not to HTTP: str.strip() would take these off and let k1 in.
    "next-line-suffix": b"Bearer k1\x85",
    "no-break-space-suffix": b"Bearer k1\xa0",
    "no-break-space-prefix": b"Bearer \xa0k1",
}


def test_bad_credentials_get_one_identical_401(server: ServerThread) -> None:
    bodies = set()
    with httpx.Client(base_url=server.base_url) as client:
        for value in BAD_CREDENTIALS.values():
            headers = [] if value is None else [(b"authorization", value)]
            response = client.post("/v1/responses", headers=headers,
                                   json={"model": MODEL, "input": "hi"})
            assert_openai_error(response, 401, code="invalid_api_key",
                                type="invalid_request_error")
            bodies.add(response.content)
    assert len(bodies) == 1, bodies


def test_trailing_whitespace_bearer_is_401(server: ServerThread) -> None:
    # httpx (h11) refuses to send a header value ending in whitespace; a socket does.
    with raw_connect(server) as sock:
        sock.sendall(request_head("GET", "/v1/models", {"Authorization": "Bearer   "}))
        status, headers, rest = read_response_head(sock)
        body = read_body(sock, headers, rest)
    assert status == 401
    assert b'"code":"invalid_api_key"' in body


def test_spaces_and_tabs_around_the_key_are_http_whitespace(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        for value in (b"Bearer  k1", b"Bearer \tk2", b"Bearer \t k1"):
            response = client.get("/v1/models", headers=[(b"authorization", value)])
            assert response.status_code == 200, value


def test_keys_are_accepted_with_any_scheme_case(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        for header in ("Bearer k1", "bearer k2", "BEARER k1"):
            response = client.get("/v1/models", headers={"authorization": header})
            assert response.status_code == 200, (header, response.text)


def test_sdk_with_wrong_key_raises_authentication_error(server: ServerThread) -> None:
    with strict_sdk(server, api_key="nope") as client, \
            pytest.raises(openai.AuthenticationError) as raised:
        client.responses.create(model=MODEL, input="hi")
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def _routes(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, with placeholders filled in."""
    settings = Settings(engine="scripted", port=0)
    app = create_app(settings, engine=ScriptedEngine(), store=SQLiteStore(tmp_path / "x.db"))
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "resp_unknown", rule.rule)
        for method in sorted(rule.methods or ()):
            if method not in ("HEAD", "OPTIONS"):
                routes.append((method, path))
    return routes


def test_every_route_but_health_needs_a_key(server: ServerThread, tmp_path: Path) -> None:
    routes = _routes(tmp_path)
    paths = {path for _, path in routes}
    # The routes this test knows must all be among them (the list is not empty or stale).
    assert {"/v1/responses", "/v1/models", "/metrics", "/health",
            "/v1/responses/resp_unknown/cancel"} <= paths
    checked = 0
    with httpx.Client(base_url=server.base_url) as client:
        for method, path in [*routes, ("GET", "/no/such/route"), ("POST", "/v1/nothing")]:
            response = client.request(method, path, json={} if method == "POST" else None)
            if path == "/health":
                assert response.status_code == 200, response.text
                continue
            assert_openai_error(response, 401, code="invalid_api_key")
            checked += 1
    assert checked >= 10


def test_no_key_configured_means_open(tmp_path_factory: pytest.TempPathFactory,
                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="trio_responses"), \
            serve_scripted(tmp_path_factory) as open_server, http(open_server) as client:
        assert client.get("/v1/models").status_code == 200
    assert any("no API key configured" in r.getMessage() for r in caplog.records)


# -- key isolation ------------------------------------------------------------------

@pytest.fixture(scope="module")
def k1_responses(server: ServerThread) -> dict[str, str]:
    """A finished stored response and a running background one, both owned by k1."""
    with strict_sdk(server, api_key="k1") as client:
        done = client.responses.create(model=MODEL, input="k1's secret")
        background = client.responses.create(model=MODEL, input="hold [[stall]]",
                                             background=True)
    return {"done": done.id, "background": background.id}


def _not_found(response: httpx.Response) -> None:
    assert_openai_error(response, 404, param="response_id")


def test_other_key_gets_404_everywhere(server: ServerThread,
                                       k1_responses: dict[str, str]) -> None:
    done, background = k1_responses["done"], k1_responses["background"]
    with http(server, "k2") as k2:
        for response_id in (done, background):
            _not_found(k2.get(f"/v1/responses/{response_id}"))
            _not_found(k2.get(f"/v1/responses/{response_id}", params={"stream": "true"}))
            _not_found(k2.get(f"/v1/responses/{response_id}/input_items"))
            _not_found(k2.post(f"/v1/responses/{response_id}/cancel"))
            _not_found(k2.delete(f"/v1/responses/{response_id}"))
        follow_up = k2.post("/v1/responses", json={
            "model": MODEL, "input": "and then?", "previous_response_id": done})
        assert_openai_error(follow_up, 404, param="previous_response_id",
                            code="previous_response_not_found")


def test_other_key_gets_404_in_the_sdk(server: ServerThread,
                                       k1_responses: dict[str, str]) -> None:
    done = k1_responses["done"]
    with strict_sdk(server, api_key="k2") as k2:
        with pytest.raises(openai.NotFoundError):
            k2.responses.retrieve(done)
        with pytest.raises(openai.NotFoundError):
            k2.responses.input_items.list(done)
        with pytest.raises(openai.NotFoundError):
            k2.responses.delete(done)
        with pytest.raises(openai.NotFoundError):
            k2.responses.cancel(k1_responses["background"])
        with pytest.raises(openai.NotFoundError):
            k2.responses.create(model=MODEL, input="x", previous_response_id=done)


def test_owner_unaffected_by_the_other_key(server: ServerThread,
                                           k1_responses: dict[str, str]) -> None:
    # Runs after the 404 tests in this module: k2's DELETE and cancel changed nothing.
    done, background = k1_responses["done"], k1_responses["background"]
    with strict_sdk(server, api_key="k1") as k1:
        kept = k1.responses.retrieve(done)
        assert kept.status == "completed"
        assert kept.output_text == "You said: k1's secret"
        items = k1.responses.input_items.list(done)
        assert [item.type for item in items.data] == ["message"]
        assert k1.responses.retrieve(background).status == "in_progress"
        follow_up = k1.responses.create(model=MODEL, input="and then?",
                                        previous_response_id=done)
        assert follow_up.status == "completed"
        cancelled = k1.responses.cancel(background)
        assert cancelled.status == "cancelled"
        k1.responses.delete(done)
        with pytest.raises(openai.NotFoundError):
            k1.responses.retrieve(done)
