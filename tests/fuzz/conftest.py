"""One scripted-engine server for the whole directory, on loopback, with an API key.

The engine answers at zero delay, so the fuzzers spend their time budget on requests,
not on waiting; ``[[stall]]`` and ``[[fail]]`` still work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.store import SQLiteStore

MODEL = "scripted"
API_KEY = "sk-fuzz"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Multiplies every example count in this directory, for a longer run than CI's (the
# defaults keep tests/fuzz under a minute on 2 cores): TRIO_RESPONSES_FUZZ_SCALE=10.
SCALE = float(os.environ.get("TRIO_RESPONSES_FUZZ_SCALE", "1"))


def scaled(count: int) -> int:
    return max(1, int(count * SCALE))


@pytest.fixture(scope="package")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    path = tmp_path_factory.mktemp("fuzz-store") / "responses.sqlite3"
    engine = ScriptedEngine(token_delay=0, model_name=MODEL)
    settings = Settings(engine="scripted", host="127.0.0.1", port=0, api_keys=(API_KEY,),
                        responses_ping_interval_seconds=0, shutdown_grace_seconds=2)
    with ServerThread(settings, engine=engine, store=SQLiteStore(path)) as server:
        yield server
