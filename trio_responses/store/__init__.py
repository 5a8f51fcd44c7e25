"""Where responses with ``store=true`` live: the protocol and its SQLite implementation."""

from __future__ import annotations

from .base import TERMINAL_STATUSES, ResponseStore, StoredResponse
from .sqlite import SQLiteStore

__all__ = [
    "TERMINAL_STATUSES",
    "ResponseStore",
    "SQLiteStore",
    "StoredResponse",
]
