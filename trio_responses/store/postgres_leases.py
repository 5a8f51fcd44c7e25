"""Which replicas are alive on a PostgreSQL store: heartbeats and leases.

Every process that opens the store has a row in ``instances`` and renews its
``heartbeat_at`` from a thread of its own, on a connection of its own, every third of
its lease. The rows a process creates carry its instance id. A running row (queued or
in_progress) whose instance has no row, or whose lease ran out, belonged to a replica that
is gone (kill -9, a lost node, a clean close): any replica's sweep — at start-up and
after every heartbeat — saves it as ``failed``, as the SQLite store's start-up sweep
does with a dead process's rows. Time is the database's ``now()``, never a replica's
clock.

A replica that stalls past its lease (a frozen VM) loses its rows the same way; when it
comes back, its late final writes are dropped by :meth:`finish`'s condition, and its
next heartbeat registers it again.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import psycopg

log = logging.getLogger("trio_responses")

INTERRUPTED_ERROR = {
    "code": "server_error",
    "message": "The server stopped while this response was running.",
}

_EXPIRED = "i.heartbeat_at + i.lease_seconds * interval '1 second' <= now()"


def heartbeat(conn: psycopg.Connection[Any], instance: str, lease_seconds: float) -> None:
    conn.execute(
        "INSERT INTO instances (id, lease_seconds) VALUES (%s, %s) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lease_seconds = %s",
        (instance, lease_seconds, lease_seconds))


def fail_orphans(conn: psycopg.Connection[Any], dumps: Any) -> int:
    """In one transaction: save every running row of a gone replica as ``failed`` (the
    status column and the object a client is shown together), then forget the replicas
    whose lease ran out. Rows another sweep is saving right now are skipped."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT r.id, r.response FROM responses r "
            "WHERE r.status IN ('queued', 'in_progress') AND NOT EXISTS ("
            "  SELECT 1 FROM instances i WHERE i.id = r.instance AND NOT (" + _EXPIRED + ")) "
            "FOR UPDATE OF r SKIP LOCKED").fetchall()
        for response_id, text in rows:
            response = json.loads(text)
            response["status"] = "failed"
            response["error"] = dict(INTERRUPTED_ERROR)
            conn.execute("UPDATE responses SET status = 'failed', response = %s WHERE id = %s",
                         (dumps(response), response_id))
            # Followers and cancellers on other replicas look again (at commit).
            conn.execute("SELECT pg_notify('trio_responses_events', %s)", (response_id,))
        conn.execute("DELETE FROM instances i WHERE " + _EXPIRED)
    return len(rows)


class Heartbeat:
    """The thread that keeps this replica's lease and sweeps gone replicas' rows."""

    def __init__(self, url: str, instance: str, lease_seconds: float, dumps: Any) -> None:
        self.url = url
        self.instance = instance
        self.lease_seconds = lease_seconds
        self._dumps = dumps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trio_responses-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the caller then deletes the instance row)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                heartbeat(conn, self.instance, self.lease_seconds)
                failed = fail_orphans(conn, self._dumps)
                if failed:
                    log.warning("marked %d responses of replicas whose lease ran out as failed",
                                failed)
            except psycopg.Error as exc:
                # The database is away: keep trying; our lease may run out meanwhile.
                log.warning("store heartbeat failed: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
