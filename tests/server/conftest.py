"""Clients for the server tests, one per module: building an httpx client (and so an
SDK client) loads an SSL context, which costs more than most of these tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.server.helpers import http_client
from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread


@pytest.fixture(scope="module")
def client(scripted_server: ServerThread) -> Iterator[openai.OpenAI]:
    """The official SDK in strict mode, against this module's scripted server."""
    with strict_sdk(scripted_server) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(scripted_server: ServerThread) -> Iterator[httpx.Client]:
    """A plain httpx client for what the SDK cannot send or hides."""
    with http_client(scripted_server) as plain:
        yield plain
