"""Sealed content: encrypted reasoning and compaction items, sealed and opened with the
server's keys. The one module that does it; the rest of the code sees plain text.

A sealed value is URL-safe base64 (no padding) of::

    version (1 byte) | key id (4 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext + tag

The key id is the first 4 bytes of the key's SHA-256, so a value names the key that
sealed it without revealing it. The authenticated data is the header and the *purpose*
(``reasoning``, ``compaction``): a value sealed for one purpose does not open as another.
Anything tampered with, cut short, or sealed under a key the server does not have fails
to open (:class:`SealError`), never yields wrong text.

The key file (``--sealing-key-file``; by default ``sealing.keys`` in the cache folder,
created with one new key when absent) holds one key per line, each 32 random bytes in
base64; blank lines and ``#`` comments are skipped. The first key seals; every key
opens. To rotate: put a new key on the first line and keep the old ones below until the
items they sealed no longer matter. Replicas that share the file open each other's
values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
KEY_BYTES = 32
_ID_BYTES = 4
_NONCE_BYTES = 12
_HEADER_BYTES = 1 + _ID_BYTES + _NONCE_BYTES
DEFAULT_KEY_FILE = "sealing.keys"


class SealError(ValueError):
    """A sealed value that does not open: tampered with, truncated, or foreign."""


class KeyFileError(ValueError):
    """A key file that cannot be used (the server does not start with it)."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_ID_BYTES]


class Sealer:
    """Seals with the first key, opens with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyFileError("a sealer needs at least one key")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise KeyFileError(f"a sealing key is {KEY_BYTES} bytes, not {len(key)}")
        self._sealing = (key_id(keys[0]), AESGCM(keys[0]))
        self._opening = {key_id(key): AESGCM(key) for key in reversed(keys)}

    @classmethod
    def generate(cls) -> Sealer:
        """A sealer with one new random key (tests, or a server with no key file)."""
        return cls([secrets.token_bytes(KEY_BYTES)])

    def seal(self, purpose: str, plaintext: bytes) -> str:
        kid, aead = self._sealing
        header = bytes([VERSION]) + kid + os.urandom(_NONCE_BYTES)
        sealed = aead.encrypt(header[1 + _ID_BYTES:], plaintext, _aad(purpose, header))
        return base64.urlsafe_b64encode(header + sealed).rstrip(b"=").decode("ascii")

    def open(self, purpose: str, value: str) -> bytes:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError) as exc:
            raise SealError("not a sealed value (bad base64)") from exc
        if len(raw) < _HEADER_BYTES + 16:
            raise SealError("too short to be a sealed value")
        if raw[0] != VERSION:
            raise SealError(f"unknown sealed value version {raw[0]}")
        header, sealed = raw[:_HEADER_BYTES], raw[_HEADER_BYTES:]
        aead = self._opening.get(header[1:1 + _ID_BYTES])
        if aead is None:
            raise SealError("sealed under a key this server does not have")
        try:
            return aead.decrypt(header[1 + _ID_BYTES:], sealed, _aad(purpose, header))
        except InvalidTag as exc:
            raise SealError("tampered with, or not sealed for this use") from exc


def _aad(purpose: str, header: bytes) -> bytes:
    return b"trio_responses:" + purpose.encode() + b":" + header


def parse_key_file(text: str, where: str = "the key file") -> list[bytes]:
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line.replace("-", "+").replace("_", "/")
                                   + "=" * (-len(line) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KeyFileError(f"{where}, line {number}: not base64") from exc
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"{where}, line {number}: a key is {KEY_BYTES} bytes in "
                               f"base64, not {len(key)}")
        keys.append(key)
    if not keys:
        raise KeyFileError(f"{where} holds no key")
    return keys


def new_key_line() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def load_sealer(path: Path, *, create: bool) -> Sealer:
    """The sealer of the key file at ``path``; with ``create``, a missing file is made
    with one new key (readable by its owner only; two servers racing to make it end up
    with the same one)."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("# trio_responses sealing keys: the first seals, all open.\n"
                      f"{new_key_line()}\n")
        try:
            os.link(temporary, path)  # fails if another process made it first
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the sealing key file {path}: {exc}") from exc
    return Sealer(parse_key_file(text, str(path)))
