"""Items that carry sealed content (:mod:`.sealing`): encrypted reasoning.

A reasoning item with ``encrypted_content`` (sealed by :func:`reasoning_sealer` when a
request asked for ``include: ["reasoning.encrypted_content"]``) comes back in a later
request's input; :func:`open_input_items` opens it and puts its text in the item's
``content``, so the prompt gets it exactly as a ``previous_response_id`` chain gives
the stored item's text. The items stored as the request's input keep the sealed value
only (the plain text is for the prompt).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from .sealing import Sealer, SealError

REASONING = "reasoning"
ENCRYPTED_REASONING_INCLUDE = "reasoning.encrypted_content"


def reasoning_sealer(sealer: Sealer) -> Callable[[str], str]:
    """What seals a reasoning item's text into its ``encrypted_content``."""
    return lambda text: sealer.seal(REASONING, json.dumps({"text": text}).encode())


def open_reasoning(sealer: Sealer, value: str) -> str:
    """The text sealed in a reasoning item's ``encrypted_content``; raises SealError."""
    try:
        payload = json.loads(sealer.open(REASONING, value))
    except ValueError as exc:  # SealError is one; bad JSON inside a good seal is not
        raise SealError(str(exc)) from exc
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        raise SealError("no reasoning text inside")
    return text


def open_input_items(sealer: Sealer, items: Sequence[Mapping[str, Any]],
                     root: str = "input") -> list[Mapping[str, Any]]:
    """``items`` (a request's, in order) with every sealed reasoning item opened into its
    ``content``; one that does not open is a 400 ``invalid_encrypted_content`` naming it
    (``input[3].encrypted_content``)."""
    opened: list[Mapping[str, Any]] = []
    for index, item in enumerate(items):
        sealed = item.get("encrypted_content") if item.get("type") == REASONING else None
        if sealed is None:
            opened.append(item)
            continue
        param = f"{root}[{index}].encrypted_content"
        try:
            text = open_reasoning(sealer, sealed)
        except SealError as exc:
            raise InvalidRequest(
                f"The encrypted content of '{root}[{index}]' could not be opened: {exc}. "
                "It must be sent back exactly as this server (or a replica sharing its "
                "sealing keys) returned it.", param=param,
                code="invalid_encrypted_content") from exc
        opened.append({**item, "content": [{"type": "reasoning_text", "text": text}]})
    return opened


def open_history_items(sealer: Sealer, items: Sequence[Mapping[str, Any]]
                       ) -> list[Mapping[str, Any]]:
    """Stored items (a conversation's, a chain's) with sealed reasoning opened where it
    has no text of its own; one that no longer opens (its key rotated out) is left
    without text: an old turn's reasoning is not worth failing a new request for."""
    opened: list[Mapping[str, Any]] = []
    for item in items:
        sealed = item.get("encrypted_content") if item.get("type") == REASONING else None
        if sealed is not None and not item.get("content"):
            try:
                text = open_reasoning(sealer, sealed)
            except SealError:
                pass
            else:
                item = {**item, "content": [{"type": "reasoning_text", "text": text}]}
        opened.append(item)
    return opened
