"""One scripted-engine server for the whole directory, on loopback, with an API key.

The engine answers at zero delay, so the fuzzers spend their time budget on requests,
not on waiting; ``[[stall]]`` and ``[[fail]]`` still work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.scripted import ScriptedEngine

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
    engine = ScriptedEngine(token_delay=0, model_name=MODEL)
    with serve_scripted(tmp_path_factory, engine, host="127.0.0.1",
                        api_keys=(API_KEY,)) as server:
        yield server
