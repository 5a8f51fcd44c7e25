"""What the runtime needs from a store: responses, and conversations with their items.

Rows are plain data: the response object as JSON (exactly what a client is shown), the
input items of the turn that created it, and for background responses the event log, so
``GET ?stream=true`` can replay a finished response. Visibility is by ``owner`` (a digest
of the API key that created the row; ``""`` when the server has no keys): a row is found
only by its owner.

What a call loads is what it needs (issue 13, finding 2): :meth:`ResponseStore.get` — used
by GET, cancel and DELETE — loads the row without its input items or events, so their
cost does not grow with a long response's log; :meth:`ResponseStore.input_items` reads a
turn's input items, and :meth:`ResponseStore.events` reads the event log in pages, so a
replay holds one page at a time. The log is kept apart from the row (its own table in
SQL stores), written by :meth:`ResponseStore.finish`; how long it may be is the
runtime's business (``--max-background-log-bytes``: past it only the first and the final
events are kept).

Retention (issue 13, finding 9): :meth:`ResponseStore.expire` and
:meth:`ResponseStore.trim` delete finished responses (with their input items and logs)
that are too old, or of an owner over a size quota, a bounded batch per call, each in one
short transaction; ``runtime/retention.py`` calls them from a background sweep. A
response's size is the UTF-8 bytes of its JSON: the object, the input items and the log.
Running responses are never deleted; conversations are not touched.

Conversations (the Conversations API) are a list of items in the order they were
appended, each item a JSON object with its ``id``. Appends are all or nothing: a
response's input and output items are appended in the same transaction that writes its
final object (:meth:`ResponseStore.finish` with ``append``), so no crash leaves half a
turn, or a finished response whose turn is missing. The protocol says nothing of how
items are kept (SQLite and PostgreSQL stores implement it alike); who may append when is
the runtime's business (one response at a time per conversation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import trio

TERMINAL_STATUSES = frozenset({"completed", "failed", "incomplete", "cancelled"})

Item = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    status: str
    background: bool
    previous_response_id: str | None
    created_at: float
    # The response object as last written; its "status" equals ``status``.
    response: Mapping[str, Any]
    # This turn's input items (each with an "id"), in order: given to create(), filled in
    # by chain(); get() leaves them out (empty): read them with input_items().
    input_items: tuple[Mapping[str, Any], ...]
    # How many events the stored log holds (background responses, written by finish();
    # 0: none). Read them with events().
    event_count: int = 0


@dataclass(frozen=True, slots=True)
class StoredConversation:
    id: str
    owner: str
    # Whole seconds since the epoch, as the Conversations API shows it.
    created_at: int
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ConversationAppend:
    """Items to add at the end of a conversation, in order, each with its own ``id``."""

    conversation_id: str
    owner: str
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class ItemPage:
    """A page of a conversation's items, in the order asked for."""

    items: tuple[Item, ...]
    has_more: bool


class ConversationFull(Exception):
    """An append would take a conversation past its item limit; nothing was appended."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"the conversation has {count} items; the limit is {limit}")
        self.count = count
        self.limit = limit


class UnknownItem(LookupError):
    """A cursor (``after``) names no item of the conversation."""


class ConversationStore(Protocol):
    """Conversations and their items. Every call is by ``owner``: another owner's
    conversation is not found, and nothing of it changes."""

    async def create_conversation(self, conversation: StoredConversation,
                                  items: Sequence[Item] = ()) -> None:
        """Insert a conversation with its first items (one transaction)."""

    async def get_conversation(self, conversation_id: str, owner: str
                               ) -> StoredConversation | None: ...

    async def update_conversation(self, conversation_id: str, owner: str,
                                  metadata: Mapping[str, str]) -> StoredConversation | None:
        """Replace the metadata; None if not found."""

    async def delete_conversation(self, conversation_id: str, owner: str) -> bool:
        """Delete it and its items (not the responses that used it)."""

    async def append_items(self, append: ConversationAppend, *, max_items: int = 0) -> bool:
        """Append in order, in one transaction. ``max_items`` (0: none): raise
        :class:`ConversationFull` instead if the conversation would hold more. False if
        the conversation is not found (nothing appended)."""

    async def conversation_items(self, conversation_id: str, owner: str
                                 ) -> list[Item] | None:
        """Every item, oldest first; None if the conversation is not found."""

    async def list_items(self, conversation_id: str, owner: str, *, after: str | None,
                         limit: int, descending: bool) -> ItemPage | None:
        """Up to ``limit`` items after the item ``after`` (in the order asked for); None
        if the conversation is not found; :class:`UnknownItem` for an unknown ``after``."""

    async def get_item(self, conversation_id: str, owner: str, item_id: str) -> Item | None:
        ...

    async def delete_item(self, conversation_id: str, owner: str, item_id: str) -> bool: ...


class ResponseStore(ConversationStore, Protocol):
    async def open(self) -> int:
        """Create or migrate the schema, then mark every row a dead process left
        ``queued``/``in_progress`` as ``failed``; returns how many were marked.
        Called once before the server accepts connections."""

    async def aclose(self) -> None: ...

    async def create(self, record: StoredResponse) -> None:
        """Insert a new row (status queued or in_progress, or already terminal) with its
        input items; ``record.event_count`` is ignored (a log comes with finish())."""

    async def finish(
        self,
        response_id: str,
        response: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]] = (),
        *,
        append: ConversationAppend | None = None,
    ) -> bool:
        """Write the final response object (its ``status`` is terminal) if, and only if,
        the stored row is not terminal yet. Returns whether it was written: a response
        cancelled first stays cancelled, and a late engine result is dropped. ``events``:
        the log to keep for replays (background responses), each event with a
        ``sequence_number``, strictly increasing; kept apart from the row, and its length
        is ``event_count``. ``append``: the response's turn, appended to its conversation
        in the same transaction (only if the object was written; skipped if the
        conversation is gone)."""

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The row without its input items (``input_items`` is empty) or events: what
        GET, cancel and DELETE need, at a cost that does not grow with the log."""

    async def input_items(self, response_id: str, owner: str) -> list[Item] | None:
        """The turn's input items, in order; None if not found for ``owner``."""

    async def events(self, response_id: str, owner: str, *, after: int, limit: int
                     ) -> list[Item] | None:
        """A page of the stored log: up to ``limit`` events whose ``sequence_number`` is
        greater than ``after``, in order (empty past the end); None if the response is
        not found for ``owner``."""

    async def delete(self, response_id: str, owner: str) -> bool: ...

    async def expire(self, *, created_before: float, limit: int) -> int:
        """Delete up to ``limit`` finished responses created before ``created_before``
        (seconds since the epoch), oldest first, each with its input items and log;
        returns how many. One short transaction."""

    async def trim(self, *, max_bytes_per_owner: int, limit: int) -> int:
        """For each owner whose responses take more than ``max_bytes_per_owner`` bytes,
        delete its oldest finished responses until it is within it (running ones count,
        but stay); at most ``limit`` in all; returns how many. One short transaction."""

    async def chain(self, response_id: str, owner: str) -> list[StoredResponse] | None:
        """The response and every ``previous_response_id`` ancestor, oldest first, each
        with its input items (not its events); None if ``response_id`` (or any ancestor)
        is not found for ``owner``."""


# A control message's handler: (kind, response id, call id: 0 for a message that wants no
# answer), called on the Trio thread.
ControlHandler = Callable[[str, str, int], None]


@runtime_checkable
class SharedStore(Protocol):
    """A store that several server processes (replicas behind a load balancer) share:
    the PostgreSQL store. A running response lives on the replica that created it; these
    calls let the others follow it, and reach it (issue 16). The SQLite store is one
    process's, and has none of them."""

    async def publish_events(self, response_id: str, events: Sequence[Item]) -> None:
        """Save the next events of a running response (each with its
        ``sequence_number``; saving one twice keeps the first) and wake its followers on
        every replica once they are committed."""

    def changed(self, response_id: str) -> trio.Event:
        """An event set the next time new events or the final state of the response are
        committed by any replica. Take it *before* reading, so nothing committed in
        between is missed (it may also be set for no change: read again)."""

    async def send_control(self, kind: str, response_id: str) -> None:
        """Tell every replica (``kind``: ``cancel``); the one running the response acts."""

    async def call_replica(self, kind: str, response_id: str, payload: Mapping[str, Any],
                           *, wait_seconds: float) -> Mapping[str, Any] | None:
        """Ask the replica running the response (``kind``: ``tool_outputs``) and wait for
        its answer; None if none came within ``wait_seconds`` (no replica runs it)."""

    async def call_payload(self, call_id: int) -> Mapping[str, Any] | None:
        """The payload of a call this replica was asked (None if it is gone)."""

    async def answer_call(self, call_id: int, answer: Mapping[str, Any]) -> None:
        """Give the caller its answer (the first answer wins)."""

    def on_control(self, handler: ControlHandler | None) -> None:
        """What this process does with control messages (the registry's owner sets it)."""


# How many responses a previous_response_id chain may hold; a longer (or cyclic) one is
# treated as missing.
MAX_CHAIN_DEPTH = 1000


def walk_chain(get: Callable[[str], StoredResponse | None], response_id: str
               ) -> list[StoredResponse] | None:
    """The chain ending at ``response_id``, oldest first, each record read by ``get``
    (with its input items); None when a link is missing, repeats or the chain is over
    :data:`MAX_CHAIN_DEPTH`. Both stores walk their chains with it."""
    newest_first: list[StoredResponse] = []
    seen: set[str] = set()
    current: str | None = response_id
    while current is not None:
        if current in seen or len(newest_first) >= MAX_CHAIN_DEPTH:
            return None
        seen.add(current)
        record = get(current)
        if record is None:
            return None
        newest_first.append(record)
        current = record.previous_response_id
    newest_first.reverse()
    return newest_first
