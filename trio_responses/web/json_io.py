"""JSON in and out of the routes: the request body, query parameters, JSON answers.

Every route module reads requests through these, so a bad query or body gets the same
OpenAI-shaped 400 (with ``param``) wherever it is sent.
"""

from __future__ import annotations

from typing import Any

from quart import Response, g, request

from ..errors import InvalidRequest, UnsupportedMediaType
from ..protocol.conversations_api import check_include
from ..protocol.sse import encode_json


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(encode_json(value), status=status, headers=headers,
                    content_type="application/json")


async def read_body() -> bytes:
    """The request's JSON body. Only ``application/json`` (any parameters) is read: a
    browser sends a cross-site POST without asking first (no CORS preflight) only as
    ``text/plain``, a form, or with no type at all, so none of those may act here."""
    content_type = request.headers.get("content-type")
    if content_type is None or \
            content_type.partition(";")[0].strip().lower() != "application/json":
        shown = "none" if content_type is None else repr(content_type[:100])
        raise UnsupportedMediaType(
            f"Unsupported Content-Type ({shown}); request bodies must be application/json.")
    body = await request.get_data(cache=False, as_text=False)
    assert isinstance(body, bytes)
    g.body_read = True
    return body


def query_int(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid '{name}': expected an integer.", param=name,
                             code="invalid_type") from None
    if not low <= value <= high:
        raise InvalidRequest(f"Invalid '{name}': must be between {low} and {high}.",
                             param=name, code="invalid_value")
    return value


def query_bool(name: str) -> bool:
    raw = (request.args.get(name) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"Invalid '{name}': expected true or false.", param=name)
    return raw in ("true", "1")


def query_order() -> str:
    """``order`` of a list: ``asc`` or ``desc`` (the default, as OpenAI's)."""
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid 'order': expected 'asc' or 'desc'.", param="order")
    return order


def query_include() -> tuple[str, ...]:
    """``include``, checked against OpenAI's includable values. The openai SDK writes a
    list as ``include[]=a&include[]=b``; ``include=a`` is read too."""
    return check_include([*request.args.getlist("include"),
                          *request.args.getlist("include[]")])
