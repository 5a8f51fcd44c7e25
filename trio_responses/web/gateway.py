"""Gateway manners: API keys, request ids, OpenAI's echo headers.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every
configured key, with no early exit, so timing says nothing about which bytes matched.
The digest of the matching key (shortened) is the *owner* of what the request stores;
with no keys configured every request has the owner ``""``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import AuthenticationFailed, InvalidRequest

UNAUTHENTICATED_PATHS = frozenset({"/health"})
MAX_REQUEST_ID_LENGTH = 256


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _presented_digest(token: str) -> bytes:
    # Header values arrive decoded as Latin-1: get the client's bytes back, so a key
    # with non-ASCII characters (configured, and sent, as UTF-8) can match.
    try:
        raw = token.encode("latin-1")
    except UnicodeEncodeError:
        raw = token.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).digest()


class KeyRing:
    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    @property
    def open(self) -> bool:
        return not self._digests

    def owner(self, authorization: str | None) -> str:
        """The owner for an ``Authorization`` header, or AuthenticationFailed."""
        if self.open:
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        presented = _presented_digest(token.strip())
        matched: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(presented, digest):
                matched = digest
        if scheme.lower() != "bearer" or not token.strip() or matched is None:
            raise AuthenticationFailed(
                "Incorrect API key provided. You can find your API key in your deployment's "
                "configuration.",
            )
        return matched.hex()[:32]


def request_id(headers: Mapping[str, str] | Any) -> str:
    given = headers.get("x-request-id")
    if given and len(given) <= MAX_REQUEST_ID_LENGTH and given.isprintable():
        return given
    return f"req_{uuid.uuid4().hex}"


def check_body_request_id(body_request_id: str | None, header_request_id: str | None) -> None:
    if body_request_id is not None and header_request_id is not None \
            and body_request_id != header_request_id:
        raise InvalidRequest(
            "The body's 'request_id' differs from the X-Request-Id header.",
            param="request_id", code="request_id_mismatch")
