"""``truncation: "auto"``: which messages of a prompt go when it is too long.

The oldest messages of the history go first: the non-system messages before the last
user message (the history behind ``previous_response_id``, or a conversation's items),
never the instructions (system and developer messages), the last user message or what
follows it. Tool results whose call went are dropped with it. How many go is found by
bisection over a ``render`` the engine supplies (its own token count), so a long history
costs O(log n) renders; the stored history itself is never touched.

Both engines use it: the vLLM bridge with the chat template's token ids, the scripted
engine with its word count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

Message = Mapping[str, Any]
_Rendered = TypeVar("_Rendered")

# Roles kept by truncation: the instructions.
SYSTEM_ROLES = frozenset({"system", "developer"})


def droppable_indices(messages: Sequence[Message]) -> list[int]:
    """Indices of non-system messages before the last user message, oldest first."""
    last_user = max(
        (i for i, m in enumerate(messages) if m.get("role") == "user"),
        default=len(messages),
    )
    return [i for i in range(last_user) if messages[i].get("role") not in SYSTEM_ROLES]


def without(messages: Sequence[Message], drop: Sequence[int]) -> list[Message]:
    gone = set(drop)
    kept = [m for i, m in enumerate(messages) if i not in gone]
    # A tool result whose call was dropped would confuse the model: drop leading ones.
    first_other = next(
        (i for i, m in enumerate(kept) if m.get("role") not in SYSTEM_ROLES), len(kept)
    )
    while first_other < len(kept) and kept[first_other].get("role") == "tool":
        del kept[first_other]
    return kept


def drop_oldest(
    messages: Sequence[Message],
    render: Callable[[list[Message]], _Rendered],
    fits: Callable[[_Rendered], bool],
) -> tuple[_Rendered, int] | None:
    """The rendering of ``messages`` without the fewest oldest droppable messages that
    makes it fit, and how many went; None if nothing can go or even dropping all of them
    does not make it fit. Dropping more never makes a prompt longer."""
    droppable = droppable_indices(messages)
    low, high = 1, len(droppable)
    best: tuple[_Rendered, int] | None = None
    while low <= high:
        middle = (low + high) // 2
        rendered = render(without(messages, droppable[:middle]))
        if fits(rendered):
            best, high = (rendered, middle), middle - 1
        else:
            low = middle + 1
    return best
