"""Reliability tests: sizes, server processes, and the figures they measured.

``RELIABILITY_SCALE=full`` (``scripts/reliability``) runs the full-size variants
(1,000+ streams, dozens of kill -9 cycles); the default is the CI size, which keeps the
whole directory to about a minute and a half on a 2-core machine. Every test records
what it measured with ``figures.add``; the figures are printed in the terminal summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.procs import ServerProcess

FULL = os.environ.get("RELIABILITY_SCALE", "ci") == "full"


@dataclass(frozen=True)
class Scale:
    full: bool
    storm_streams: int
    storm_token_delay: float
    storm_max_events: int
    crash_cycles: int
    conversation_crash_cycles: int
    hostile_repeats: int


SCALE = Scale(full=True, storm_streams=1000, storm_token_delay=1.0, storm_max_events=5,
              crash_cycles=30, conversation_crash_cycles=30, hostile_repeats=50) if FULL else \
    Scale(full=False, storm_streams=200, storm_token_delay=0.2, storm_max_events=8,
          crash_cycles=5, conversation_crash_cycles=2, hostile_repeats=10)

_FIGURES: list[tuple[str, str, Any]] = []


class Figures:
    def __init__(self, test: str) -> None:
        self.test = test

    def add(self, name: str, value: Any) -> None:
        _FIGURES.append((self.test, name, value))


@pytest.fixture
def scale() -> Scale:
    return SCALE


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.name)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Make ServerProcess objects that are stopped (if still running) after the test."""
    made: list[ServerProcess] = []

    def make(**kwargs: Any) -> ServerProcess:
        server = ServerProcess(tmp_path, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section(f"reliability figures ({'full' if FULL else 'ci'} size)")
    for test, name, value in _FIGURES:
        if isinstance(value, float):
            value = f"{value:.4g}"
        terminalreporter.write_line(f"{test}: {name} = {value}")
