"""OpenAI's echo headers: x-request-id, openai-organization, openai-version,
openai-processing-ms; and the body's request_id against X-Request-Id."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.errors import assert_openai_error
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted

from .helpers import MODEL, http

GENERATED_ID = re.compile(r"^req_[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory) as server:
        yield server


def test_request_id_echoed(server: ServerThread) -> None:
    with http(server) as client:
        for method, path in (("POST", "/v1/responses"), ("GET", "/v1/models"),
                             ("GET", "/v1/responses/resp_missing"), ("GET", "/health")):
            response = client.request(method, path, headers={"x-request-id": "my-id-42"},
                                      json={"model": MODEL, "input": "hi"}
                                      if method == "POST" else None)
            assert response.headers["x-request-id"] == "my-id-42", path


def test_request_id_generated_when_absent_or_unusable(server: ServerThread) -> None:
    seen = set()
    with http(server) as client:
        for headers in ({}, {"x-request-id": ""}, {"x-request-id": "x" * 257},
                        {"x-request-id": "tab\there"}):
            response = client.get("/v1/models", headers=headers)
            assert GENERATED_ID.match(response.headers["x-request-id"]), headers
            seen.add(response.headers["x-request-id"])
    assert len(seen) == 4  # a new id each time


def test_request_id_on_errors_and_streams(server: ServerThread) -> None:
    with http(server) as client:
        error = client.post("/v1/responses", headers={"x-request-id": "err-1"},
                            json={"model": MODEL})
        assert error.status_code == 400
        assert error.headers["x-request-id"] == "err-1"
        with client.stream("POST", "/v1/responses", headers={"x-request-id": "stream-1"},
                           json={"model": MODEL, "input": "hi", "stream": True}) as stream:
            assert stream.headers["x-request-id"] == "stream-1"
            stream.read()


def test_openai_organization_and_version_echoed(server: ServerThread) -> None:
    with http(server) as client:
        response = client.post(
            "/v1/responses",
            headers={"OpenAI-Organization": "org-test", "OpenAI-Version": "2024-01-01"},
            json={"model": MODEL, "input": "hi"})
        assert response.status_code == 200
        assert response.headers["openai-organization"] == "org-test"
        assert response.headers["openai-version"] == "2024-01-01"
        plain = client.get("/v1/models")
        assert "openai-organization" not in plain.headers
        assert plain.headers["openai-version"] == "2020-10-01"


def test_processing_ms(server: ServerThread) -> None:
    with http(server) as client:
        for response in (client.get("/v1/models"),
                         client.post("/v1/responses", json={"model": MODEL, "input": "hi"}),
                         client.get("/v1/responses/resp_missing")):
            value = response.headers["openai-processing-ms"]
            assert value.isdigit() and int(value) < 10_000


def test_sdk_sees_the_request_id(server: ServerThread) -> None:
    with strict_sdk(server) as client:
        raw = client.responses.with_raw_response.create(
            model=MODEL, input="hi", extra_headers={"X-Request-Id": "sdk-7"})
        assert raw.headers["x-request-id"] == "sdk-7"
        assert raw.parse().status == "completed"


def test_body_request_id_must_match_header(server: ServerThread) -> None:
    body = {"model": MODEL, "input": "hi", "request_id": "body-id"}
    with http(server) as client:
        mismatch = client.post("/v1/responses", json=body, headers={"x-request-id": "other"})
        assert_openai_error(mismatch, 400, param="request_id", code="request_id_mismatch",
                            type="invalid_request_error")
        assert mismatch.headers["x-request-id"] == "other"
        same = client.post("/v1/responses", json=body, headers={"x-request-id": "body-id"})
        assert same.status_code == 200, same.text
        alone = client.post("/v1/responses", json=body)
        assert alone.status_code == 200, alone.text
        tokens = client.post("/v1/responses/input_tokens", json=body,
                             headers={"x-request-id": "other"})
        assert_openai_error(tokens, 400, param="request_id")


# Values a client may send that must not come back: control-ish and non-ASCII bytes
# (which h11 lets through as obs-text), line-breaking attempts, and 8 KB of anything.
UNECHOABLE: list[bytes] = [b"org-\x85x", b"org\xa0x", b"org x", b"o" * 8192, b"org;x=1",
                           b"\xff\xfe"]


@pytest.mark.parametrize("value", UNECHOABLE, ids=["nel", "nbsp", "space", "8kb", "semicolon",
                                                   "latin-1"])
def test_unfit_organization_and_version_are_not_echoed(server: ServerThread, value: bytes
                                                       ) -> None:
    with http(server) as client:
        response = client.get("/v1/models", headers=[(b"openai-organization", value),
                                                     (b"openai-version", value)])
    assert response.status_code == 200
    assert "openai-organization" not in response.headers
    assert response.headers["openai-version"] == "2020-10-01"
