"""Gateway manners: API keys, allowed hosts, request ids, OpenAI's echo headers.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every
configured key, with no early exit, so timing says nothing about which bytes matched.
The digest of the matching key (shortened) is the *owner* of what the request stores;
with no keys configured every request has the owner ``""``. Only spaces and tabs around
the token are trimmed (HTTP's own whitespace): ``str.strip`` would also drop U+0085 or
U+00A0, so ``k1\xa0`` would pass as ``k1``.

A server with no key is open to whatever can reach it, including a web page in a
browser on the same machine, through DNS rebinding (a name of the attacker's that
resolves to 127.0.0.1): :class:`HostCheck` lets such a server answer only requests whose
``Host`` is an IP address, localhost, or one the operator allows (``--allowed-hosts``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import AuthenticationFailed, InvalidRequest, MisdirectedRequest

UNAUTHENTICATED_PATHS = frozenset({"/health"})
MAX_REQUEST_ID_LENGTH = 256
# HTTP's whitespace around a header value's token.
_OWS = " \t"
# What an OpenAI-Organization or OpenAI-Version value may be to be echoed back (ids and
# dates as OpenAI writes them); anything else (control bytes, 8 KB values) is dropped.
_ECHOABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _owner(digest: bytes) -> str:
    return digest.hex()[:32]


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

    @staticmethod
    def owner_of(key: str) -> str:
        """The owner a configured key's requests have."""
        return _owner(_digest(key))

    def owner(self, authorization: str | None) -> str:
        """The owner for an ``Authorization`` header, or AuthenticationFailed."""
        if self.open:
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip(_OWS)
        presented = _presented_digest(token)
        matched: bytes | None = None
        for digest in self._digests:
            if hmac.compare_digest(presented, digest):
                matched = digest
        if scheme.lower() != "bearer" or not token or matched is None:
            raise AuthenticationFailed(
                "Incorrect API key provided. You can find your API key in your deployment's "
                "configuration.",
            )
        return _owner(matched)


class HostCheck:
    """Which ``Host`` values a server answers: any, when it has keys and no allow-list;
    else IP addresses, localhost (and ``*.localhost``) and the allowed names (``name``,
    ``.domain`` for it and its subdomains, ``*`` for any)."""

    def __init__(self, allowed: Sequence[str], *, keys_configured: bool) -> None:
        names = {name.strip().lower().rstrip(".") for name in allowed if name.strip()}
        self.enforced = bool(names) or not keys_configured
        self._any = "*" in names
        self._names = {name for name in names if not name.startswith(".")}
        self._domains = tuple(name for name in names if name.startswith("."))

    def check(self, host: str | None) -> None:
        """Raise MisdirectedRequest (421) unless ``host`` (the header, maybe with a port)
        is one this server answers."""
        if not self.enforced or self._any or not host:  # no Host: no name to rebind
            return
        name = _host_name(host)
        if name is not None and (
            name == "localhost" or name.endswith(".localhost") or _is_ip(name)
            or name in self._names or name.endswith(self._domains)
            or f".{name}" in self._domains
        ):
            return
        raise MisdirectedRequest(
            "This server does not answer requests for this Host. It has no API key, so it "
            "answers only its IP addresses, localhost and the names in --allowed-hosts.",
            code="invalid_host")


def _host_name(host: str) -> str | None:
    """The name in a Host header (lower case, no port, no trailing dot), or None."""
    host = host.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        end = host.find("]")
        return host[1:end] if end > 0 else None
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def echoable(value: str | None) -> str | None:
    """An OpenAI-Organization / OpenAI-Version value fit to send back, else None."""
    if value is None or not _ECHOABLE.fullmatch(value):
        return None
    return value


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
