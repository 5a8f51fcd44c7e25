"""The deployment the compliance suite runs against, and its clients: the fixtures every
module of the suite uses (``conftest.py`` makes them visible). From the environment
(``RESPONSES_BASE_URL``, ``RESPONSES_API_KEY``, ``RESPONSES_MODEL``,
``RESPONSES_TIMEOUT``), else the ``local_responses_deployment`` fixture, else a skip.

Both clients check every JSON body that is a response object (a create, a retrieve, a
cancel) against the Open Responses specification (``openresponses-types``), its
timestamps integers on the wire: :func:`check_response_bodies`, an httpx response hook.
Stream events are checked where the suite reads them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.support.open_responses import spec_response
from tests.support.sdk import POOL, strict_sdk


@dataclass(frozen=True)
class Deployment:
    base_url: str  # with /v1
    api_key: str
    model: str
    timeout: float


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Deployment:
    timeout = float(os.environ.get("RESPONSES_TIMEOUT", "120"))
    base_url = os.environ.get("RESPONSES_BASE_URL", "").rstrip("/")
    if base_url:
        api_key = os.environ.get("RESPONSES_API_KEY", "")
        model = os.environ.get("RESPONSES_MODEL", "")
        if not model:
            with openai.OpenAI(base_url=base_url, api_key=api_key or "unused") as sdk:
                model = next(iter(sdk.models.list())).id
        return Deployment(base_url, api_key, model, timeout)
    try:
        local = request.getfixturevalue("local_responses_deployment")
    except pytest.FixtureLookupError:
        pytest.skip("set RESPONSES_BASE_URL (and RESPONSES_API_KEY, RESPONSES_MODEL) to run "
                    "the compliance suite")
    url, key, model = local
    return Deployment(url, key, model, timeout)


def check_response_bodies(response: httpx.Response) -> None:
    """An httpx response hook: a JSON body that is a response object conforms to the
    Open Responses spec, its timestamps integers on the wire."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    response.read()
    body = response.json()
    if isinstance(body, dict) and body.get("object") == "response" and "status" in body:
        check_wire_timestamps(body)
        spec_response(body)


def check_wire_timestamps(response: dict[str, Any]) -> None:
    """Whole Unix seconds, as integers (the SDK's models would read 1.0 as well)."""
    assert isinstance(response["created_at"], int), response["created_at"]
    assert response["completed_at"] is None or isinstance(response["completed_at"], int), \
        response["completed_at"]


@pytest.fixture(scope="session")
def sdk(deployment: Deployment) -> Iterator[openai.OpenAI]:
    transport = openai.DefaultHttpxClient(timeout=deployment.timeout, limits=POOL,
                                          event_hooks={"response": [check_response_bodies]})
    with strict_sdk(deployment.base_url, api_key=deployment.api_key or "unused",
                    timeout=deployment.timeout, max_retries=2,
                    http_client=transport) as client:
        yield client


@pytest.fixture(scope="session")
def http(deployment: Deployment) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {deployment.api_key}"} if deployment.api_key else {}
    with httpx.Client(base_url=deployment.base_url + "/", headers=headers,
                      timeout=deployment.timeout, limits=POOL,
                      event_hooks={"response": [check_response_bodies]}) as client:
        yield client


@pytest.fixture(scope="session")
def model(deployment: Deployment) -> str:
    return deployment.model
