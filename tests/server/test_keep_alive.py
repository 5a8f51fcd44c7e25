"""Idle keep-alive connections: ``--keep-alive-timeout-seconds`` is Hypercorn's timer.

Hypercorn closes a connection idle for its ``keep_alive_timeout`` (5 s by default, the
slow-loris defence tests/reliability checks); a deployment whose clients pool
connections longer raises it (issue 17: at 5 s, httpx's pool expiry too, a pooled
connection can be closed just as a client sends a request on it).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.server import ServerThread, serve_scripted
from trio_responses import Settings
from trio_responses.server import hypercorn_config


def test_the_setting_is_hypercorns_keep_alive_timeout() -> None:
    assert hypercorn_config(Settings()).keep_alive_timeout == 5.0  # Hypercorn's own default
    raised = Settings(keep_alive_timeout_seconds=75)
    assert hypercorn_config(raised).keep_alive_timeout == 75


def test_the_backlog_setting_is_hypercorns() -> None:
    """A burst of a thousand connections overran Hypercorn's own backlog of 100
    (benchmarks: server_overhead.py --storm 1000)."""
    assert hypercorn_config(Settings()).backlog == 2048
    assert hypercorn_config(Settings.from_args(["--backlog", "4096"])).backlog == 4096
    with pytest.raises(ValueError, match="backlog"):
        Settings(backlog=0)


@pytest.fixture(scope="module")
def short_keep_alive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve_scripted(tmp_path_factory, keep_alive_timeout_seconds=0.3) as server:
        yield server


def test_the_setting_reaches_hypercorn(short_keep_alive: ServerThread) -> None:
    host, port = short_keep_alive.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # The answer, then, idle past the setting, the server's close (recv gives b""; at
        # the default 5 s the socket's 3 s timeout would fail this first).
        answer = b""
        while received := sock.recv(1 << 16):
            answer += received
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"}")

