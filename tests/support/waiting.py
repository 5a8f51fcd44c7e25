"""Waiting on a condition from outside the server's Trio run: poll it until it holds.

Tests never sleep to let something happen; they wait for the thing itself. Where it can
only be seen from outside (a status over HTTP, an engine figure read with
``ServerThread.call``), :func:`wait_until` polls it. From a Trio test, run it in a worker
thread (``await trio.to_thread.run_sync(...)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0,
               what: str = "condition", *, interval: float = 0.01,
               max_interval: float | None = None) -> None:
    """Call ``predicate`` every ``interval`` seconds until it is true (the interval
    doubling up to ``max_interval``, if given: for a deployment far away); fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)
        if max_interval is not None:
            interval = min(interval * 2, max_interval)
