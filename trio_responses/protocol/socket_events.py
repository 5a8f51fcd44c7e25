"""Events of the Responses WebSocket mode that are not response events.

The client sends ``response.create`` (every field of ``POST /v1/responses``, plus an
optional ``stream_id`` naming a lane) and ``response.steer``; the server answers with
the response's own events (each with the lane's ``stream_id``), ``error`` events and
the steering notices built here. Shapes are the openai SDK's
(``types/responses/responses_server_event.py``, ``response_steer_*.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import APIError

# A lane's name: what the SDK's session accepts (1-256 ASCII letters, digits, _ - .).
# Nothing in it needs escaping in JSON, so it can be spliced into encoded events.
STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")


def valid_stream_id(value: object) -> bool:
    return isinstance(value, str) and STREAM_ID.fullmatch(value) is not None


def with_lane(event: dict[str, Any], stream_id: str | None) -> dict[str, Any]:
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


def error_event(error: APIError, stream_id: str | None = None) -> dict[str, Any]:
    """An ``error`` event: the error object of an HTTP error, and its status."""
    body = error.to_dict()["error"]
    if error.headers:
        body["headers"] = dict(error.headers)
    return with_lane({"type": "error", "error": body, "status": error.status}, stream_id)


def steer_accepted(sequence: int, steer_id: str, response_id: str, stream_id: str | None
                   ) -> dict[str, Any]:
    return with_lane({"type": "response.steer.accepted", "sequence_number": sequence,
                      "steer": {"id": steer_id, "previous_response_id": response_id}},
                     stream_id)


def steer_pending(sequence: int, steer_id: str, response_id: str,
                  required_input: Sequence[Mapping[str, Any]], stream_id: str | None
                  ) -> dict[str, Any]:
    return with_lane({"type": "response.steer.pending", "sequence_number": sequence,
                      "reason": "waiting_for_required_input",
                      "required_input": [dict(stub) for stub in required_input],
                      "steer": {"id": steer_id, "previous_response_id": response_id}},
                     stream_id)


def steer_failed(sequence: int, code: str, message: str, *, response_id: str,
                 steer_input: Any, steer_id: str | None, stream_id: str | None
                 ) -> dict[str, Any]:
    steer: dict[str, Any] = {"input": steer_input, "previous_response_id": response_id}
    if steer_id is not None:
        steer["id"] = steer_id
    return with_lane({"type": "response.steer.failed", "sequence_number": sequence,
                      "error": {"code": code, "message": message,
                                "type": "invalid_request_error"},
                      "steer": steer}, stream_id)
