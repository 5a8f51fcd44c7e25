"""A key with non-ASCII characters works when the client sends it as UTF-8 bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore

KEY = "clé-ünïcødé"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    path: Path = tmp_path_factory.mktemp("store") / "responses.sqlite3"
    settings = Settings(engine="scripted", port=0, api_keys=(KEY,))
    with ServerThread(settings, engine=ScriptedEngine(model_name="scripted"),
                      store=SQLiteStore(path)) as running:
        yield running


def test_utf8_key_matches(server: ServerThread) -> None:
    ok = httpx.get(server.base_url + "/v1/models",
                   headers={"authorization": f"Bearer {KEY}".encode()})
    assert ok.status_code == 200
    wrong = httpx.get(server.base_url + "/v1/models",
                      headers={"authorization": "Bearer clé-ünïcødÉ".encode()})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
