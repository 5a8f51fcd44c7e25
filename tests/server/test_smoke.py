from __future__ import annotations

import gc

import openai
import pytest

from tests.support.events import as_dict, check_stream, joined_text
from tests.support.server import ServerThread, serve_scripted
from trio_responses.engine.scripted import ScriptedEngine


def test_create_stream_retrieve(client: openai.OpenAI, scripted_server: ServerThread) -> None:
    response = client.responses.create(model="scripted", input="hello world")
    assert response.status == "completed"
    assert response.output_text == "You said: hello world"
    with client.responses.stream(model="scripted", input="again") as stream:
        events = [as_dict(event) for event in stream]
        final = stream.get_final_response()
    check_stream(events)
    assert joined_text(events) == final.output_text == "You said: again"
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_start_up_freezes_the_heap(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Everything alive once the engine has started is left out of later collections
    # (with vLLM loaded a full collection would stall every stream for ~0.4 s).
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with serve_scripted(tmp_path_factory, ScriptedEngine()):
        assert gc.get_freeze_count() > 10_000
