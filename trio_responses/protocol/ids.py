"""Identifiers in OpenAI's style (``resp_…``, ``msg_…``, ``fc_…``, ``call_…``).

Id generation is a value passed around, never a global, so tests can make ids
deterministic without monkeypatching.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable

IdFactory = Callable[[str], str]

# The id prefix of an item, by its type, when the server gives it an id.
ITEM_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
                  "custom_tool_call": "ctc", "custom_tool_call_output": "ctco",
                  "reasoning": "rs", "compaction": "cmp"}


def item_id(ids: IdFactory, item_type: str) -> str:
    """A new id for an item of ``item_type`` (``msg_…``, ``fc_…``; ``item_…`` otherwise)."""
    return ids(ITEM_ID_PREFIX.get(item_type, "item"))


def random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def counting_ids(start: int = 0) -> IdFactory:
    """Deterministic ids (``resp_0001``…), for tests."""
    counter = itertools.count(start)

    def make(prefix: str) -> str:
        return f"{prefix}_{next(counter):04d}"

    return make
