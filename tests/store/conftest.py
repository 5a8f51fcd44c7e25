"""The stores every shared store test runs against: SQLite (a file of the test's own)
and PostgreSQL (a database of the test's own on the session's throwaway cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from trio_responses.store import SQLiteStore
from trio_responses.store.base import ResponseStore

STORE_KINDS = ("sqlite", "postgresql")

# A new, unopened store on the test's storage; call it again for another process's view
# of the same rows (a restart, another replica).
StoreFactory = Callable[[], ResponseStore]


def factory_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if kind == "sqlite":
        path = tmp_path / "responses.sqlite3"
        return lambda: SQLiteStore(path)
    from trio_responses.store.postgres import PostgresStore

    url: str = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)


@pytest.fixture(params=STORE_KINDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return factory_for(request.param, request, tmp_path)


@pytest.fixture
async def shared_store(new_store: StoreFactory) -> AsyncIterator[ResponseStore]:
    store = new_store()
    assert await store.open() == 0
    yield store
    await store.aclose()
