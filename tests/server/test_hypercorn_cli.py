"""``hypercorn -k trio trio_responses:app``, the README's second way to run the server:
Hypercorn's own CLI in a subprocess, configured from ``TRIO_RESPONSES_*`` variables
(here the scripted engine, an API key and a store file), serving the strict SDK.
The same with the real engine is tests/engine/test_hypercorn_cli_real.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import openai
import pytest

from tests.reliability.procs import ServerProcess
from tests.support.events import check_stream, joined_text, sdk_events
from tests.support.sdk import strict_sdk

API_KEY = "hypercorn-key"
MODEL = "scripted-hypercorn"


class HypercornCLI(ServerProcess):
    """Hypercorn's console script, as the README runs it, on a free loopback port."""

    def __init__(self, tmp: Path, env: Mapping[str, str]) -> None:
        super().__init__(tmp, env=env)

    def command(self) -> list[str]:
        hypercorn = str(Path(sys.executable).with_name("hypercorn"))
        return [hypercorn, "-k", "trio", "--bind", f"127.0.0.1:{self.port}",
                "trio_responses:app"]


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HypercornCLI]:
    tmp = tmp_path_factory.mktemp("hypercorn")
    server = HypercornCLI(tmp, {
        "TRIO_RESPONSES_ENGINE": "scripted",
        "TRIO_RESPONSES_MODEL": MODEL,
        "TRIO_RESPONSES_API_KEYS": API_KEY,
        "TRIO_RESPONSES_STORE_PATH": str(tmp / "responses.sqlite3"),
        "TRIO_RESPONSES_SCRIPTED_TOKEN_DELAY_SECONDS": "0.01",
    })
    try:
        yield server.start()
    finally:
        server.stop()


def test_serves_the_api_configured_from_the_environment(hypercorn: HypercornCLI) -> None:
    with strict_sdk(hypercorn.base_url + "/v1", api_key=API_KEY) as client:
        assert [model.id for model in client.models.list()] == [MODEL]
        created = client.responses.create(model=MODEL, input="hello hypercorn")
        assert created.output_text == "You said: hello hypercorn"
        assert client.responses.retrieve(created.id).output_text == created.output_text
        with client.responses.stream(model=MODEL, input="a streamed one") as stream:
            events = sdk_events(stream)
        check_stream(events)
        assert joined_text(events) == "You said: a streamed one"
    # TRIO_RESPONSES_API_KEYS took effect.
    with strict_sdk(hypercorn.base_url + "/v1", api_key="wrong") as client, \
            pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert httpx.get(hypercorn.base_url + "/health").json() == {"status": "ok",
                                                                  "model": MODEL}


def test_importing_the_package_builds_nothing() -> None:
    """``trio_responses.app`` is a plain attribute Hypercorn can find, and importing the
    package imports neither the web stack nor an engine (the app is built on first use)."""
    code = ("import sys, trio_responses\n"
            "assert callable(trio_responses.app)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'quart', 'quart_trio', 'hypercorn', 'vllm', 'torch'}),"
            " 'trio_responses.web.app' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["[]", "False"]


def test_sigterm_ends_hypercorn_cleanly(tmp_path: Path) -> None:
    server = HypercornCLI(tmp_path, {"TRIO_RESPONSES_ENGINE": "scripted",
                                     "TRIO_RESPONSES_STORE_PATH": str(tmp_path / "r.sqlite3")})
    server.start()
    try:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
    assert "Traceback" not in server.log()
