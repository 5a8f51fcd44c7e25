"""A shared store's saved log is the one finish() is given (issue 13, finding 2, with
issue 16's live publishing): events published while the response ran and left out of
its final log (a log cut past --max-background-log-bytes, heartbeats) are not kept."""

from __future__ import annotations

from tests.store.test_store_protocol import record
from trio_responses.store.postgres import PostgresStore


async def test_finish_keeps_only_the_final_log(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await store.create(record("resp_1"))
        published = [{"type": "response.output_text.delta", "sequence_number": n}
                     for n in range(10)]
        await store.publish_events("resp_1", published)
        final = [published[0], {"type": "response.completed", "sequence_number": 10}]
        assert await store.finish("resp_1", {"id": "resp_1", "status": "completed"}, final)
        assert await store.events("resp_1", "owner-a", after=-1, limit=50) == final
    finally:
        await store.aclose()
