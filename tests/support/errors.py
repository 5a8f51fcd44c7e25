"""Assertions on OpenAI's error object, ``{"error": {"message", "type", "param",
"code"}}``: on a raw HTTP answer (:func:`assert_openai_error`) and on the exception the
SDK raised for one (:func:`assert_sdk_error`)."""

from __future__ import annotations

from collections.abc import Collection
from types import EllipsisType
from typing import Any

import httpx
import openai

ERROR_FIELDS = ["message", "type", "param", "code"]


def assert_openai_error(response: httpx.Response, status: int | Collection[int], *,
                        param: str | EllipsisType | None = None, code: str | None = None,
                        type: str | None = None, exact: bool = True) -> dict[str, Any]:
    """``response`` is ``status`` (or one of several) with OpenAI's error object, whose
    ``param`` is ``param`` (``...``: any), and ``code`` and ``type`` are the ones given
    (None: any); returns the error object.

    ``exact``: the body is the error object and nothing else, its fields in OpenAI's
    order (this server); otherwise other fields may come with them (any deployment).
    """
    statuses = {status} if isinstance(status, int) else set(status)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), \
        response.headers
    body = response.json()
    if exact:
        assert isinstance(body, dict) and list(body) == ["error"], body
    else:
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error: dict[str, Any] = body["error"]
    if exact:
        assert list(error) == ERROR_FIELDS, error
    else:
        assert set(ERROR_FIELDS) <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if param is not ...:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if type is not None:
        assert error["type"] == type, error
    return error


def assert_sdk_error(exc: openai.APIStatusError, status: int, *, param: str | None,
                     code: str | None = None) -> None:
    """The SDK's exception for an error answer: ``status``, ``param``, and ``code``
    (None: any)."""
    assert exc.status_code == status, exc
    assert isinstance(exc.body, dict)
    assert exc.body["param"] == param, exc.body
    if code is not None:
        assert exc.body["code"] == code, exc.body
