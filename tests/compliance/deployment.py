"""The deployment the compliance suite runs against, and its clients: the fixtures every
module of the suite uses (``conftest.py`` makes them visible). From the environment
(``RESPONSES_BASE_URL``, ``RESPONSES_API_KEY``, ``RESPONSES_MODEL``,
``RESPONSES_TIMEOUT``), else the ``local_responses_deployment`` fixture, else a skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.support.sdk import strict_sdk


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


@pytest.fixture(scope="session")
def sdk(deployment: Deployment) -> Iterator[openai.OpenAI]:
    with strict_sdk(deployment.base_url, api_key=deployment.api_key or "unused",
                    timeout=deployment.timeout, max_retries=2) as client:
        yield client


@pytest.fixture(scope="session")
def http(deployment: Deployment) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {deployment.api_key}"} if deployment.api_key else {}
    with httpx.Client(base_url=deployment.base_url + "/", headers=headers,
                      timeout=deployment.timeout) as client:
        yield client


@pytest.fixture(scope="session")
def model(deployment: Deployment) -> str:
    return deployment.model
