"""What the runtime needs from a response store.

Rows are plain data: the response object as JSON (exactly what a client is shown), the
input items of the turn that created it, and for background responses the event log, so
``GET ?stream=true`` can replay a finished response. Visibility is by ``owner`` (a digest
of the API key that created the row; ``""`` when the server has no keys): a row is found
only by its owner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TERMINAL_STATUSES = frozenset({"completed", "failed", "incomplete", "cancelled"})


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
    # This turn's input items (each with an "id"), in order.
    input_items: tuple[Mapping[str, Any], ...]
    # Background responses: every event sent, in order, written when the response ends.
    events: tuple[Mapping[str, Any], ...] = ()


class ResponseStore(Protocol):
    async def open(self) -> int:
        """Create or migrate the schema, then mark every row a dead process left
        ``queued``/``in_progress`` as ``failed``; returns how many were marked.
        Called once before the server accepts connections."""

    async def aclose(self) -> None: ...

    async def create(self, record: StoredResponse) -> None:
        """Insert a new row (status queued or in_progress, or already terminal)."""

    async def finish(
        self,
        response_id: str,
        response: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]] = (),
    ) -> bool:
        """Write the final response object (its ``status`` is terminal) if, and only if,
        the stored row is not terminal yet. Returns whether it was written: a response
        cancelled first stays cancelled, and a late engine result is dropped."""

    async def get(self, response_id: str, owner: str) -> StoredResponse | None: ...

    async def delete(self, response_id: str, owner: str) -> bool: ...

    async def chain(self, response_id: str, owner: str) -> list[StoredResponse] | None:
        """The response and every ``previous_response_id`` ancestor, oldest first;
        None if ``response_id`` (or any ancestor) is not found for ``owner``."""
