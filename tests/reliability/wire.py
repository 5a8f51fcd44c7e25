"""A small HTTP/1.1 client on raw Trio sockets, for tests that must control the socket.

The reliability tests open hundreds of streams at once, drop them at chosen points (a FIN,
a reset, a half-close), stop reading, or send bytes slowly; a general client hides the
socket that those tests are about. ``Wire`` sends one request with h11 and reads the
response head and body as they arrive; ``SSEParser`` turns body bytes into events the way
a standard SSE client does (blank line ends an event, ``:`` lines are comments).

Everything is loopback only, and every read is bounded by the caller's deadline.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import trio

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass
class SSEEvent:
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEParser:
    """Bytes in, events out; comments (``: ping``) are counted, not returned."""

    pending: bytes = b""
    comments: int = 0
    errors: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[SSEEvent]:
        self.pending += data.replace(b"\r\n", b"\n")
        events: list[SSEEvent] = []
        while b"\n\n" in self.pending:
            block, self.pending = self.pending.split(b"\n\n", 1)
            name: str | None = None
            lines: list[str] = []
            for raw in block.split(b"\n"):
                line = raw.decode("utf-8")
                if line.startswith(":"):
                    self.comments += 1
                    continue
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    lines.append(value)
                else:
                    # id:/retry:/unknown fields break the openai SDK (RELIABILITY.md trap 1).
                    self.errors.append(f"unexpected SSE field {key!r}")
            if name is not None and not lines:
                self.errors.append(f"event {name!r} without data")
            if lines:
                events.append(SSEEvent(name, "\n".join(lines)))
        return events


class Wire:
    """One connection, one request. Use ``async with await Wire.connect(port)``."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.conn = h11.Connection(h11.CLIENT)
        self.head: h11.Response | None = None
        self.parser = SSEParser()
        self.body = bytearray()
        self.eof = False
        self.complete = False  # the whole response body arrived (not cut by a close)

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> Wire:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window the client advertises stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock), port)

    async def __aenter__(self) -> Wire:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending -----------------------------------------------------------------------

    def request_bytes(self, method: str, path: str, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> bytes:
        names = {k.lower() for k in (headers or {})}
        hdrs = [("host", f"127.0.0.1:{self.port}"), *(headers or {}).items()]
        if body is not None and "content-length" not in names \
                and "transfer-encoding" not in names:
            hdrs.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=path, headers=hdrs))
        assert data is not None
        if body is not None and "transfer-encoding" not in names:
            data += self.conn.send(h11.Data(data=body)) or b""
            data += self.conn.send(h11.EndOfMessage()) or b""
        return data

    async def send_request(self, method: str, path: str, body: bytes | None = None,
                           headers: Mapping[str, str] | None = None) -> None:
        await self.stream.send_all(self.request_bytes(method, path, body, headers))

    async def post_json(self, path: str, payload: Any,
                        headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        await self.send_request("POST", path, body,
                                {"content-type": "application/json", **(headers or {})})

    # -- receiving ---------------------------------------------------------------------

    async def _next(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(65536)
            if not data:
                self.eof = True
            self.conn.receive_data(data)

    async def read_head(self) -> h11.Response:
        while self.head is None:
            event = await self._next()
            if isinstance(event, h11.Response):
                self.head = event
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("connection closed before the response head")
        return self.head

    def header(self, name: str) -> str | None:
        assert self.head is not None
        for key, value in self.head.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None

    async def read_chunk(self) -> bytes | None:
        """The next piece of body, or None at the end of the response (or connection)."""
        await self.read_head()
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                self.body += event.data
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                self.complete = True
                return None
            if isinstance(event, h11.ConnectionClosed):
                return None

    async def read_body(self) -> bytes:
        while await self.read_chunk() is not None:
            pass
        return bytes(self.body)

    async def read_json(self) -> tuple[int, Any]:
        head = await self.read_head()
        body = await self.read_body()
        return head.status_code, json.loads(body) if body else None

    async def next_events(self) -> list[SSEEvent] | None:
        """The events in the next piece of body (possibly none), or None at the end."""
        chunk = await self.read_chunk()
        if chunk is None:
            return None
        return self.parser.feed(chunk)

    def unsent(self) -> int:
        """The bytes the server holds for this connection that this client has not taken
        (Linux: the server's end in /proc/net/tcp). On loopback nothing stays in flight,
        so these are what a closed receive window keeps out."""
        ours = self.stream.socket.getsockname()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            if (local, remote) == (self.port, ours):
                return int(fields[4].split(":")[0], 16)
        return 0

    # -- leaving -----------------------------------------------------------------------

    async def close(self, style: str = "fin") -> float:
        """Drop the connection: ``fin`` (close), ``rst`` (SO_LINGER 0: a reset) or
        ``half`` (shut the write side, then close). Returns the ``time.time()`` of the
        drop, for latency figures."""
        sock = self.stream.socket
        at = time.time()
        try:
            if style == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif style == "half":
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        await self.stream.aclose()
        return at


async def request_json(port: int, method: str, path: str, payload: Any = None
                       ) -> tuple[int, Any]:
    """One request on a fresh connection; the status and the JSON answer."""
    async with await Wire.connect(port) as wire:
        if payload is None:
            await wire.send_request(method, path)
        else:
            body = json.dumps(payload).encode()
            await wire.send_request(method, path, body, {"content-type": "application/json"})
        return await wire.read_json()


async def wait_closed(wire: Wire, seconds: float) -> bool:
    """Read and discard until the server closes the connection; False on timeout."""
    with trio.move_on_after(seconds):
        while True:
            try:
                data = await wire.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return True
            if not data:
                return True
    return False
