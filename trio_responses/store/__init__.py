"""Where responses with ``store=true`` live: the protocol and its SQLite implementation."""

from __future__ import annotations

import os
from pathlib import Path

from .base import TERMINAL_STATUSES, ResponseStore, StoredResponse
from .sqlite import SQLiteStore

__all__ = [
    "TERMINAL_STATUSES",
    "ResponseStore",
    "SQLiteStore",
    "StoredResponse",
    "default_store_path",
]


def default_store_path() -> Path:
    """``$TRIO_RESPONSES_STORE_PATH`` if set, else ``responses.sqlite3`` in the XDG data
    directory (``$XDG_DATA_HOME``, or ``~/.local/share`` when that is unset or relative,
    as the XDG spec says to ignore relative values)."""
    explicit = os.environ.get("TRIO_RESPONSES_STORE_PATH")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "trio_responses" / "responses.sqlite3"
