"""One error tree for everything a client can be told.

Every failure that reaches a client is an :class:`APIError`: it carries the HTTP status
and the four fields of OpenAI's error object. Foreign errors (vLLM, SQLite, Quart) are
translated into these at one boundary each; the web layer turns them into JSON.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    status: int = 500
    type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class AuthenticationFailed(APIError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class Conflict(APIError):
    """The resource is not in a state to take this request (a response that is not
    waiting for tool outputs)."""

    status = 409
    type = "invalid_request_error"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # The SDK retries 409s; waiting does not change this answer.
        self.headers.setdefault("x-should-retry", "false")


class MisdirectedRequest(APIError):
    """A request for a Host this server does not answer (DNS rebinding)."""

    status = 421
    type = "invalid_request_error"


class UnsupportedMediaType(APIError):
    status = 415
    type = "invalid_request_error"
    default_code = "unsupported_media_type"


class HTTPVersionNotSupported(APIError):
    """HTTP/2 over cleartext, on a server that does not serve it (``--h2c``)."""

    status = 505
    type = "invalid_request_error"
    default_code = "http_version_not_supported"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # The SDK retries every status from 500; the same request will fail the same way.
        self.headers.setdefault("x-should-retry", "false")


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(APIError):
    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"


class ServerError(APIError):
    status = 500
    type = "server_error"
    default_code = "server_error"


class EngineUnavailable(APIError):
    """The engine is dead, stopping or overloaded; the request may be retried later."""

    status = 503
    type = "server_error"
    default_code = "engine_unavailable"


class EngineError(Exception):
    """Raised by an engine when a request cannot go on (the engine died, or failed it).

    Not an :class:`APIError`: by the time it happens the response has usually started, so
    the runtime turns it into an ``error`` event and a ``failed`` response.
    """
