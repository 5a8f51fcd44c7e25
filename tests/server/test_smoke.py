from __future__ import annotations

import openai

from tests.support.events import as_dict, check_stream, joined_text
from tests.support.server import ServerThread


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
