"""A small WebSocket client on raw Trio sockets (wsproto), for the socket storms.

Like :class:`~tests.reliability.wire.Wire` for HTTP: one TCP connection whose socket the
test controls (it drops it with a FIN or a reset, via ``Wire.close``), the upgrade to
``GET /v1/responses`` and text messages in and out. Pings are answered (a heartbeat the
client ignored would not be one). Loopback only; every read is bounded by the caller.
"""

from __future__ import annotations

import json
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.reliability.wire import Wire


class SocketWire:
    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._text: list[str] = []
        self._pending: list[dict[str, Any]] = []
        self.closed = False
        self.pings = 0

    @classmethod
    async def open(cls, port: int, path: str = "/v1/responses", *, rcvbuf: int | None = None
                   ) -> SocketWire:
        wire = await Wire.connect(port, rcvbuf=rcvbuf)
        socket = cls(wire)
        try:
            await wire.stream.send_all(socket.ws.send(
                Request(host=f"127.0.0.1:{port}", target=path)))
            while True:
                for event in await socket._events():
                    if isinstance(event, AcceptConnection):
                        return socket
                    if isinstance(event, RejectConnection):
                        raise ConnectionError(f"upgrade refused: {event.status_code}")
        except BaseException:
            await wire.stream.aclose()
            raise

    async def _events(self) -> list[Any]:
        data = await self.wire.stream.receive_some(65536)
        self.ws.receive_data(data or None)
        if not data:
            self.closed = True
        return list(self.ws.events())

    async def send(self, event: dict[str, Any]) -> None:
        await self.wire.stream.send_all(self.ws.send(TextMessage(data=json.dumps(event))))

    async def receive(self) -> dict[str, Any] | None:
        """The next server event, or None when the server closed the socket."""
        while True:
            if self._pending:
                return self._pending.pop(0)
            if self.closed:
                return None
            for event in await self._events():
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        message, self._text = "".join(self._text), []
                        self._pending.append(json.loads(message))
                elif isinstance(event, Ping):
                    self.pings += 1
                    await self.wire.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.closed = True

    async def pings_until(self, count: int) -> list[dict[str, Any]]:
        """Read (answering pings) until ``count`` pings came; the events read meanwhile."""
        events: list[dict[str, Any]] = []
        while self.pings < count and not self.closed:
            for event in await self._events():
                if isinstance(event, Ping):
                    self.pings += 1
                    await self.wire.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        events.append(json.loads("".join(self._text)))
                        self._text = []
        return events

    async def drop(self, style: str = "fin") -> float:
        """Drop the TCP connection without a closing handshake; the time of the drop."""
        return await self.wire.close(style)
