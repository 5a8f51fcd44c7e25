"""Replicas waking each other: PostgreSQL ``LISTEN``/``NOTIFY``, one listening connection
per process.

Two channels. :data:`EVENTS_CHANNEL` carries a response id whenever new events of it, or
its final state, were committed (a ``NOTIFY`` inside the writing transaction is delivered
at its commit, so whoever is woken finds the rows). :data:`CONTROL_CHANNEL` carries
``<kind>:<response id>`` for the replica that runs the response (``cancel``,
``tool_outputs``): every replica hears it, the one whose registry holds the response acts.

The listening connection is a thread of its own (``Connection.notifies`` blocks), which
hands each notification to the Trio thread with ``trio.from_thread.run_sync``. After a
(re)connection every waiter is woken, since notifications sent while no one listened are
lost: a woken follower looks at the database again, so waking it too often costs one
query, never an event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import trio

log = logging.getLogger("trio_responses")

EVENTS_CHANNEL = "trio_responses_events"
CONTROL_CHANNEL = "trio_responses_control"

# channel (None: "anything may have happened", after a reconnection), payload
Dispatch = Callable[[str | None, str], None]


class Listener:
    def __init__(self, url: str, token: trio.lowlevel.TrioToken, dispatch: Dispatch) -> None:
        self.url = url
        self._token = token
        self._dispatch = dispatch
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trio_responses-listen",
                                        daemon=True)

    def start(self, timeout: float = 30) -> None:
        """Start listening; return once the first LISTEN is in place."""
        self._thread.start()
        if not self._listening.wait(timeout):
            log.warning("the store's LISTEN connection is not up yet; followers fall back "
                        "to their safety re-check until it is")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                conn.execute(f"LISTEN {CONTROL_CHANNEL}")
                self._listening.set()
                if not self._deliver(None, ""):
                    return
                while not self._stop.is_set():
                    # Wait for one, then take whatever else has come: one hop to the
                    # Trio thread per batch, not per notification (hundreds a second
                    # when many responses run).
                    notes = list(conn.notifies(timeout=0.5, stop_after=1))
                    if not notes:
                        continue
                    notes += conn.notifies(timeout=0)
                    batch = list(dict.fromkeys((n.channel, n.payload) for n in notes))
                    if not self._deliver_batch(batch):
                        return
            except psycopg.Error as exc:
                log.warning("the store's LISTEN connection failed: %s", exc)
                self._stop.wait(1.0)
            finally:
                if conn is not None:
                    conn.close()

    def _deliver(self, channel: str | None, payload: str) -> bool:
        return self._deliver_batch([(channel, payload)])

    def _deliver_batch(self, batch: Sequence[tuple[str | None, str]]) -> bool:
        def dispatch_all() -> None:
            for channel, payload in batch:
                self._dispatch(channel, payload)

        try:
            trio.from_thread.run_sync(dispatch_all, trio_token=self._token)
        except trio.RunFinishedError:
            return False
        return True
