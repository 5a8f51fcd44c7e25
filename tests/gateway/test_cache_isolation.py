"""The prefix cache is salted with the API key (issue 13, finding 1): a key's
``cached_tokens`` says nothing about what another key sent.

The probe: key k2 sent k1's secret prompt and got it reported cached (6/6, 0/6 for near
misses), and reusing k1's ``prompt_cache_key`` gave 4/4. The scripted engine caches
like vLLM's salted prefix cache (the same prompt under the same salt is reported
cached), so the salt the server gives the engine is what these tests see; the real
engine's run is in tests/engine/test_server_real.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.sdk import strict_sdk
from tests.support.server import ServerThread, serve_scripted

from .helpers import MODEL, http

SECRET = "k1's secret: the merger with Initech closes on Friday."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, api_keys=("k1", "k2")) as server:
        yield server


def cached(client: openai.OpenAI, prompt: str, cache_key: str | None = None) -> int:
    response = client.responses.create(model=MODEL, input=prompt, prompt_cache_key=cache_key)
    assert response.usage is not None and response.usage.input_tokens > 0
    return response.usage.input_tokens_details.cached_tokens


def test_another_key_cannot_see_what_a_key_sent(server: ServerThread) -> None:
    with strict_sdk(server, api_key="k1") as k1, strict_sdk(server, api_key="k2") as k2:
        assert cached(k1, SECRET) == 0
        # Same-key caching keeps working.
        assert cached(k1, SECRET) > 0
        # The probe: k2 tries k1's prompt.
        assert cached(k2, SECRET) == 0
        assert cached(k2, SECRET + " ") == 0
        # Once k2 sent it itself, k2's own cache has it.
        assert cached(k2, SECRET) > 0


def test_another_keys_prompt_cache_key_opens_nothing(server: ServerThread) -> None:
    prompt = "k1's second secret, under a prompt_cache_key of its own."
    with strict_sdk(server, api_key="k1") as k1, strict_sdk(server, api_key="k2") as k2:
        assert cached(k1, prompt, "team-cache") == 0
        assert cached(k1, prompt, "team-cache") > 0
        # The probe: k2 reuses k1's prompt_cache_key.
        assert cached(k2, prompt, "team-cache") == 0
        # Within a key, prompt_cache_key still separates caches as the client asks.
        assert cached(k1, prompt, "other-cache") == 0
        assert cached(k1, prompt) == 0


def test_input_tokens_is_a_count_and_nothing_more(server: ServerThread) -> None:
    """Counting tokens never reports anything about the cache: k2 counting k1's cached
    secret gets the same bare count as k1, as for any text of that length."""
    with strict_sdk(server, api_key="k1") as k1:
        cached(k1, SECRET)
    answers = []
    for key in ("k1", "k2"):
        with http(server, key) as client:
            response = client.post("/v1/responses/input_tokens",
                                   json={"model": MODEL, "input": SECRET})
            assert response.status_code == 200
            answers.append(response.json())
    assert answers[0] == answers[1]
    assert set(answers[0]) == {"object", "input_tokens"}
    with http(server, "k2") as client:
        other = client.post("/v1/responses/input_tokens",
                            json={"model": MODEL, "input": SECRET.replace("k1", "k9")})
    assert other.json() == answers[1]
