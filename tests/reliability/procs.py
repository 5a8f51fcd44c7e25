"""Server processes for the reliability tests: start, wait, measure, kill.

A test that measures memory, file descriptors or threads, sends signals or kills with
``-9`` needs the server in its own process. ``ServerProcess`` runs either the real CLI
(``python -m trio_responses --engine scripted``) or the probe (``python -m
tests.reliability.probe``: the same server with a recording engine and ``GET /_probe``),
on a fixed loopback port chosen once, so a restart comes back on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

REPO_ROOT = Path(__file__).resolve().parents[2]
# The tests' own look-ups close their connection, so none lingers in the server (a closed
# keep-alive connection stays until Hypercorn's keep-alive timeout) between measurements.
CLOSE = {"connection": "close"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    def __init__(self, tmp: Path, *, probe: bool = False, token_delay: float = 0.01,
                 extra: Sequence[str] = (), store_path: Path | None = None,
                 engine: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 store_url: str | None = None) -> None:
        """``engine``: the engine flags (default: the scripted engine, ``token_delay``
        seconds per token); ``env``: extra environment variables; ``store_url``: a
        PostgreSQL database (replicas share it) instead of the SQLite file."""
        self.tmp = tmp
        self.port = free_port()
        self.store_path = store_path or tmp / "responses.sqlite3"
        self.module = "tests.reliability.probe" if probe else "trio_responses"
        if engine is None:
            engine = ["--engine", "scripted", "--model", "scripted",
                      "--scripted-token-delay", str(token_delay)]
        store = (["--store-url", store_url] if store_url
                 else ["--store-path", str(self.store_path)])
        self.args = [*engine, "--port", str(self.port), *store, "--log-level", "warning",
                     *extra]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        """The command line the process runs."""
        return [sys.executable, "-m", self.module, *self.args]

    def launch(self) -> None:
        """Start the process; do not wait for the port."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.tmp / f"server-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env)

    def start(self, timeout: float = 30) -> ServerProcess:
        self.launch()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = httpx.get(self.base_url + "/health", timeout=1, headers=CLOSE)
                if health.status_code == 200 and self.listening():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def listening(self) -> bool:
        """Whether the port is ours: a restart's port was free while the server was down,
        and another test process's server may have taken it (its /health would answer
        while ours, unable to bind, exits)."""
        assert self.proc is not None
        try:
            sockets = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == self.port
                   for s in sockets)

    def log(self) -> str:
        return (self.tmp / f"server-{self.starts}.log").read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM; returns the exit code and how long the process took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def stop(self) -> None:
        """Best-effort end of the test's own process (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    # -- measurements --------------------------------------------------------------------

    def resources(self) -> dict[str, int]:
        """RSS (bytes), open fds, OS threads and CPU time (ms) of the server process."""
        proc = psutil.Process(self.pid)
        cpu = proc.cpu_times()
        return {"rss": proc.memory_info().rss, "fds": proc.num_fds(),
                "threads": proc.num_threads(), "cpu_ms": int((cpu.user + cpu.system) * 1000)}

    def probe(self, *, gc: bool = False) -> dict[str, Any]:
        """The probe server's own view (see tests/reliability/probe.py)."""
        url = self.base_url + "/_probe" + ("?gc=1" if gc else "")
        value: dict[str, Any] = httpx.get(url, timeout=30, headers=CLOSE).json()
        return value

    async def ended(self, ids: list[str]) -> list[dict[str, Any]]:
        """Each response as stored once it is no longer in progress (polled)."""
        ended: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10,
                                     headers=CLOSE) as client:
            for response_id in ids:
                while True:
                    value = (await client.get(f"/v1/responses/{response_id}")).json()
                    if value["status"] != "in_progress":
                        break
                    await trio.sleep(0.05)
                ended.append(value)
        return ended

    def metric(self, name: str, **labels: str) -> float:
        """One sample from ``/metrics`` (0 if absent)."""
        text = httpx.get(self.base_url + "/metrics", timeout=10, headers=CLOSE).text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series = f"{name}{{{want}}}" if want else name
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
