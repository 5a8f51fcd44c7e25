"""The WebSocket send path (web/ws_send.py): frames built here and written straight to
Hypercorn's connection, the ready frames of every lane in one write; what the protocol
state allows and what it does not (the close handshake, a closed stream), and the
extension offers declined so every client gets it."""

from __future__ import annotations

import json
import socket as stdlib_socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from tests.support.server import ServerThread, engine_of, run_ended, serve_scripted
from tests.support.waiting import wait_until
from trio_responses.engine.scripted import ScriptedEngine
from trio_responses.web import ws_send
from trio_responses.web.ws_send import FrameWriter, text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frames_parse_in_wsproto_at_every_length_boundary(size: int) -> None:
    client = Connection(ConnectionType.CLIENT)  # a client past its upgrade
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()
    client.receive_data(text_frame(payload) + text_frame(b'{"a":1}'))
    events = list(client.events())
    assert [type(e) for e in events] == [TextMessage, TextMessage]
    assert events[0].data == payload.decode() and events[0].message_finished
    assert events[1].data == '{"a":1}'


# -- the writer, over a stand-in for Hypercorn's stream and protocol_send ----------------

class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.release = trio.Event()
        self.stream = SimpleNamespace(closed=False,
                                      connection=SimpleNamespace(state=ConnectionState.OPEN))

    async def protocol_send(self, event: Any) -> None:
        self.sent.append(event.data)
        await self.release.wait()  # as a send held up by a full socket

    def writer(self) -> FrameWriter:
        return FrameWriter(self.stream, self.protocol_send)  # type: ignore[arg-type]


async def test_frames_that_come_during_a_write_go_out_together_after_it() -> None:
    fake = FakeConnection()
    writer = fake.writer()
    returned: list[bytes] = []

    async def write(data: bytes) -> None:
        await writer.write(data)
        returned.append(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, b"a")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, b"b")
        nursery.start_soon(write, b"c")
        await trio.testing.wait_all_tasks_blocked()
        # The first write is held: the others wait (a client that does not read blocks
        # every lane) and nothing returned but what was written.
        assert fake.sent == [b"a"] and returned == []
        fake.release.set()
    # (b and c in the order their tasks ran: Trio does not promise start order.)
    assert fake.sent[0] == b"a" and fake.sent[1:] in ([b"bc"], [b"cb"])
    assert sorted(returned) == [b"a", b"b", b"c"]


async def test_a_cancelled_writer_leaves_no_lane_waiting() -> None:
    fake = FakeConnection()
    writer = fake.writer()
    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()

        async def cancelled_write() -> None:
            with first:
                await writer.write(b"a")

        nursery.start_soon(cancelled_write)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(writer.write, b"b")
        await trio.testing.wait_all_tasks_blocked()
        first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        # The waiting lane took over: its frames went out in a write of its own.
        assert fake.sent == [b"a", b"b"]
        fake.release.set()


async def test_taken_frames_go_first_and_a_flush_cut_short_is_finished_by_a_lane(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeConnection()
    fake.release.set()
    writer = fake.writer()
    monkeypatch.setattr(writer, "_direct", True)
    wrote: list[bytes] = []

    def half(data: bytes) -> int:  # the socket takes half of what the flusher sends
        wrote.append(data[:len(data) // 2])
        return len(data) // 2

    monkeypatch.setattr(writer, "_send_now", half)
    async with trio.open_nursery() as nursery:
        woken = trio.CancelScope()
        writer.waits.add(woken)
        assert writer.take(b"ab") and writer.take(b"cd")
        await trio.testing.wait_all_tasks_blocked()  # the flusher's pass
        assert wrote == [b"ab"] and woken.cancel_called  # the lane is woken for the rest
        assert not writer.take(b"ef")  # nothing is taken before the rest is out
        nursery.start_soon(writer.write, b"gh")
    # The lane's write finished the flush first, then its own frames, in one send.
    assert fake.sent == [b"cdgh"]
    assert writer.take(b"ij")  # and taking resumes


@pytest.mark.parametrize("closed, state", [(True, ConnectionState.OPEN),
                                           (False, ConnectionState.LOCAL_CLOSING),
                                           (False, ConnectionState.REMOTE_CLOSING),
                                           (False, ConnectionState.CLOSED)])
async def test_nothing_is_written_once_the_close_began_or_the_stream_closed(
        closed: bool, state: ConnectionState) -> None:
    fake = FakeConnection()
    fake.stream.closed = closed
    fake.stream.connection.state = state
    await fake.writer().write(text_frame(b"{}"))
    assert fake.sent == []


# -- through the server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    engine = ScriptedEngine(token_delay=0.002)
    with serve_scripted(tmp_path_factory, engine) as running:
        yield running


class Client:
    """A blocking wsproto client on a plain socket, so a test sees every frame."""

    def __init__(self, server: ServerThread, extensions: list[Any] | None = None) -> None:
        port = int(server.base_url.rsplit(":", 1)[1])
        self.sock = stdlib_socket.create_connection(("127.0.0.1", port), timeout=20)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._text: list[str] = []
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/v1/responses",
                                               extensions=extensions or [])))
        accepted = [e for e in self.events() if isinstance(e, AcceptConnection)]
        assert accepted, "upgrade refused"
        self.accept = accepted[0]

    def events(self) -> list[Any]:
        """The next wsproto events; a text message whole (wsproto hands out the part of
        a frame that has arrived), and only once it is."""
        while True:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            events: list[Any] = []
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if not event.message_finished:
                        continue
                    event = TextMessage(data="".join(self._text))
                    self._text = []
                events.append(event)
            if events or not data:
                return events

    def send(self, event: dict[str, Any]) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(event))))


def stalled(stream_id: str) -> dict[str, Any]:
    return {"type": "response.create", "model": "scripted", "input": "[[stall]]",
            "stream_id": stream_id}


def test_an_offered_permessage_deflate_is_declined_and_frames_take_the_short_path(
        server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    write, take = FrameWriter.write, FrameWriter.take

    async def counted(self: FrameWriter, frames: bytes) -> None:
        writes.append(frames)
        await write(self, frames)

    def counted_take(self: FrameWriter, frames: bytes) -> bool:
        taken = take(self, frames)
        if taken:
            writes.append(frames)
        return taken

    # (The server runs in another thread: the class attributes are what it calls.)
    monkeypatch.setattr(ws_send.FrameWriter, "write", counted)
    monkeypatch.setattr(ws_send.FrameWriter, "take", counted_take)
    client = Client(server, extensions=[PerMessageDeflate()])
    try:
        assert client.accept.extensions == []  # declined: plain frames both ways
        client.send({"type": "response.create", "model": "scripted", "input": "hello"})
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] != "response.completed":
            events += [json.loads(e.data) for e in client.events()
                       if isinstance(e, TextMessage)]
    finally:
        client.sock.close()
    assert events[0]["type"] == "response.created"
    # Every event went out through the writer: written by the lane, or taken while it
    # waited and sent by the flusher.
    assert sum(w.count(b"\x81") for w in writes) >= len(events) and writes


def test_the_close_handshake_stops_the_frames_and_aborts_the_lanes(
        server: ServerThread) -> None:
    client = Client(server)
    ids: dict[str, str] = {}
    try:
        for lane in ("a", "b"):
            client.send(stalled(lane))
        while len(ids) < 2:
            for event in client.events():
                if isinstance(event, TextMessage):
                    data = json.loads(event.data)
                    if data["type"] == "response.created":
                        ids[data["stream_id"]] = data["response"]["id"]
        client.sock.sendall(client.ws.send(CloseConnection(code=1000)))
        after_close: list[Any] = []
        while client.ws.state is not ConnectionState.CLOSED:
            events = client.events()
            assert events, "the server dropped the connection without its close frame"
            closing = [i for i, e in enumerate(events) if isinstance(e, CloseConnection)]
            if closing:
                after_close += events[closing[0] + 1:]
                break
        after_close += client.events()
        assert not [e for e in after_close if isinstance(e, TextMessage)]
    finally:
        client.sock.close()
    wait_until(lambda: all(run_ended(server, rid) for rid in ids.values()), 10,
               "the lanes' runs ended")
    assert set(ids.values()) <= set(engine_of(server).aborted)


def test_flushes_cut_short_are_finished_and_every_frame_arrives_whole(
        server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every direct send writes half of what it is given (the flusher's too): the lanes
    are woken to finish each, and the client parses every frame of four lanes."""
    send_now = FrameWriter._send_now

    def half(self: FrameWriter, data: bytes) -> int:
        return send_now(self, data[:max(1, len(data) // 2)])

    monkeypatch.setattr(ws_send.FrameWriter, "_send_now", half)
    client = Client(server)
    lanes = {f"l{i}": 0 for i in range(4)}
    ended: set[str] = set()
    try:
        for lane in lanes:
            client.send({"type": "response.create", "model": "scripted",
                         "input": " ".join(["w"] * 100), "stream_id": lane})
        while len(ended) < len(lanes):
            for event in client.events():
                if isinstance(event, TextMessage):
                    data = json.loads(event.data)
                    assert data["sequence_number"] == lanes[data["stream_id"]], data
                    lanes[data["stream_id"]] += 1
                    if data["type"] == "response.completed":
                        ended.add(data["stream_id"])
    finally:
        client.sock.close()
    assert min(lanes.values()) > 100
