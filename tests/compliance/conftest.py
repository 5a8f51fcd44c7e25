"""The suite's fixtures (``deployment.py``: the deployment and its clients), and the
deployment it runs against when ``RESPONSES_BASE_URL`` is unset: our own server, with a
scripted engine, on loopback (so CI runs the suite against us).

The suite itself (test_openai_*.py) imports nothing from the server (only the tests'
helpers in tests/support); it asks for ``local_responses_deployment`` only when no
deployment is configured.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compliance.deployment import deployment, http, model, sdk
from tests.support.server import ServerThread
from trio_responses import Settings
from trio_responses.engine.base import EngineRequest
from trio_responses.engine.scripted import ScriptedEngine, echo_reply, last_user_text
from trio_responses.store import SQLiteStore

# The suite's fixtures, defined in deployment.py.
__all__ = ["deployment", "http", "local_responses_deployment", "model", "sdk"]

API_KEY = "compliance-key"
MODEL = "scripted-compliance"


def reply(request: EngineRequest) -> str:
    """Like a model: a long answer when asked for a long story (the background cancel
    test needs a response still running when it cancels), an echo otherwise."""
    if "long story" in last_user_text(request).lower():
        return " ".join(f"word{n}" for n in range(5000))
    return echo_reply(request)


@pytest.fixture(scope="session")
def local_responses_deployment(tmp_path_factory: pytest.TempPathFactory
                               ) -> Iterator[tuple[str, str, str]]:
    """(base URL with /v1, API key, model) of a scripted server with one API key."""
    engine = ScriptedEngine(reply=reply, token_delay=0.002, model_name=MODEL, step_pacing=True)
    settings = Settings(engine="scripted", port=0, api_keys=(API_KEY,),
                        shutdown_grace_seconds=2)
    store = SQLiteStore(tmp_path_factory.mktemp("compliance") / "responses.sqlite3")
    with ServerThread(settings, engine=engine, store=store) as server:
        yield server.base_url + "/v1", API_KEY, MODEL
