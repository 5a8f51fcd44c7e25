"""A request in the app's one task under Hypercorn (web/connection.py), on real Hypercorn.

Quart-Trio's reader task is replaced by Hypercorn's ``app_put`` handing each message
over as it comes: the body that follows the head in pieces, after the app started, still
reaches the request whole; a client that leaves ends its stream's run (the engine
request is aborted) and one that leaves mid-body ends its handler; and no Quart-Trio
task is left per request meanwhile.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import trio
import trio.lowlevel

from tests.server.helpers import MODEL, aborted, read_until, running
from tests.support.server import ServerThread, serve_scripted
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory) as server:
        yield server


def connect(server: ServerThread) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def head(length: int) -> bytes:
    return (b"POST /v1/responses HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % length)


def task_names(server: ServerThread) -> list[str]:
    """Every task of the server's Trio run."""
    def walk() -> list[str]:
        names: list[str] = []
        todo = [trio.lowlevel.current_root_task()]
        while todo:
            task = todo.pop()
            names.append(task.name)
            todo += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
        return names
    return server.call(walk)


def request_tasks(server: ServerThread) -> list[str]:
    """The tasks serving requests: Hypercorn's app task, and Quart-Trio's."""
    return [name for name in task_names(server)
            if name.endswith(("task_group._handle", "handle_messages", "handle_request"))]


def test_a_stream_holds_no_quart_trio_task_and_its_disconnect_aborts_the_run(
    server: ServerThread,
) -> None:
    body = json.dumps({"model": MODEL, "input": "hold [[stall]]", "stream": True,
                       "store": False}).encode()
    with connect(server) as sock:
        sock.sendall(head(len(body)) + body)
        data = read_until(sock, b"response.output_text.delta")
        assert data.startswith(b"HTTP/1.1 200")
        assert request_tasks(server) == ["hypercorn.trio.task_group._handle"]
        assert running(server) == 1
        response_id = json.loads(
            data.split(b"event: response.created\ndata: ", 1)[1].split(b"\n", 1)[0]
        )["response"]["id"]
    wait_until(lambda: aborted(server, response_id))
    wait_until(lambda: running(server) == 0)


def test_a_body_that_comes_in_pieces_after_the_head_reaches_the_request_whole(
    server: ServerThread,
) -> None:
    words = " ".join(f"w{i}" for i in range(300))
    body = json.dumps({"model": MODEL, "input": words, "store": False}).encode()
    with connect(server) as sock:
        sock.sendall(head(len(body)))
        for start in range(0, len(body), 500):
            time.sleep(0.01)  # each piece its own read, after the app has started
            sock.sendall(body[start:start + 500])
        data = read_until(sock, b"\r\n\r\n")
        length = int(data.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        rest = data.split(b"\r\n\r\n", 1)[1]
        while len(rest) < length:
            rest += sock.recv(1 << 16)
    assert data.startswith(b"HTTP/1.1 200")
    response = json.loads(rest)
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == f"You said: {words}"


def test_a_client_gone_mid_body_ends_its_handler(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(head(1000) + b'{"model": "')
        wait_until(lambda: request_tasks(server) == ["hypercorn.trio.task_group._handle"])
    # The handler, waiting for the rest of the body, is cancelled: its task ends.
    wait_until(lambda: request_tasks(server) == [])
    assert running(server) == 0
