"""Three replicas of the server as processes on loopback, sharing one PostgreSQL database
(on the session's throwaway cluster): started at once on the empty database, so they race
for its migration as replicas rolled out together do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.procs import ServerProcess
from tests.support.postgres import Cluster

REPLICAS = 3


def start_replicas(tmp: Path, url: str, count: int = REPLICAS, *, token_delay: float = 0.005,
                   extra: tuple[str, ...] = ()) -> list[ServerProcess]:
    replicas = [ServerProcess(tmp / f"replica{n}", token_delay=token_delay, store_url=url,
                              extra=extra) for n in range(count)]
    try:
        for replica in replicas:
            replica.tmp.mkdir(parents=True, exist_ok=True)
            replica.launch()
        for replica in replicas:
            replica.wait_ready(60)
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


@pytest.fixture(scope="module")
def replica_database(postgres_cluster: Cluster) -> Iterator[str]:
    url = postgres_cluster.new_database()
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, replica_database: str
             ) -> Iterator[list[ServerProcess]]:
    started = start_replicas(tmp_path_factory.mktemp("replicas"), replica_database)
    yield started
    for replica in started:
        replica.stop()
