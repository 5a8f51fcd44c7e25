"""``hypercorn -k trio trio_responses:app`` with the real engine: Hypercorn's own CLI in a
subprocess, configured from ``TRIO_RESPONSES_*`` (the default model, eager, its engine
core in-process for a ~10 s start), answering the strict SDK. It starts an engine of its
own beside the session's, in Hypercorn's worker process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.test_hypercorn_cli import HypercornCLI
from tests.support.sdk import strict_sdk

pytestmark = pytest.mark.engine
MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HypercornCLI]:
    pytest.importorskip("vllm")
    tmp = tmp_path_factory.mktemp("hypercorn-real")
    server = HypercornCLI(tmp, {
        "TRIO_RESPONSES_STORE_PATH": str(tmp / "responses.sqlite3"),
        "TRIO_RESPONSES_VLLM_ARGS": "--enforce-eager --max-model-len 2048",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "OMP_NUM_THREADS": "1",
    })
    try:
        # Hypercorn's own start-up timeout (60 s) bounds the engine start too.
        yield server.start(timeout=120)
    finally:
        server.stop()


def test_the_default_model_answers_through_hypercorns_cli(hypercorn: HypercornCLI) -> None:
    with strict_sdk(hypercorn.base_url + "/v1", timeout=120) as client:
        assert [model.id for model in client.models.list()] == [MODEL]
        response = client.responses.create(model=MODEL, input="What is the capital of France?",
                                           temperature=0, max_output_tokens=30)
    assert response.status == "completed"
    assert "Paris" in response.output_text
