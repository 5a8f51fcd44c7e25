"""The PostgreSQL store's schema: versioned, forward-only migrations.

``trio_responses_schema`` holds one row, the number of scripts of :data:`MIGRATIONS`
applied to the database. A store applies the missing ones in one transaction, under a
transaction-level advisory lock, so two replicas starting at once on an empty database
both come up: the second waits for the lock, then finds the schema current. A database
written by a newer version is refused and left alone (a rolling upgrade starts the new
version's replicas after the old ones are gone, or runs the new version's migrations
only when they are compatible with the old code: see docs/serving/deployment.md).

JSON is kept as ``text``, not ``jsonb``: the response object is stored exactly as a client
is shown it (``jsonb`` would reorder its keys). Times a replica compares with another's
(heartbeats) are the database's ``now()``, so replicas' clocks need not agree.
"""

from __future__ import annotations

# Any constant: the key of the advisory lock migrations take.
MIGRATION_LOCK_KEY = 0x7472696F  # "trio"

SCHEMA_TABLE = """
    CREATE TABLE IF NOT EXISTS trio_responses_schema (
        only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        version INTEGER NOT NULL
    )
"""

# Script N takes a database from schema version N to N+1. Append only: a released script
# is never edited, because databases already at a later version will not run it again.
MIGRATIONS: tuple[str, ...] = (
    # v1. Responses, their event logs and conversations as in the SQLite store (schema v4
    # there), and the
    # replicas' heartbeats, which replace the SQLite store's lock files: a replica whose
    # lease ran out is dead, and its running responses are failed by another one.
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        background BOOLEAN NOT NULL,
        previous_response_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        response TEXT NOT NULL,
        input_items TEXT NOT NULL,
        event_count INTEGER NOT NULL DEFAULT 0,
        instance TEXT
    );
    CREATE TABLE response_events (
        response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
        sequence_number BIGINT NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (response_id, sequence_number)
    );
    CREATE INDEX responses_unfinished ON responses (instance)
        WHERE status IN ('queued', 'in_progress');
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE TABLE conversation_items (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position BIGINT NOT NULL,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (conversation_id, position)
    );
    CREATE INDEX conversation_items_by_id ON conversation_items (conversation_id, item_id);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        lease_seconds DOUBLE PRECISION NOT NULL
    );
    """,
    # v2. Calls from one replica to the one running a response (tool outputs posted on
    # another replica), answered in the row; NOTIFY wakes both sides.
    """
    CREATE TABLE replica_calls (
        id BIGSERIAL PRIMARY KEY,
        response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        answer TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    """,
)
