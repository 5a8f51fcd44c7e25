"""nginx as the load balancer in front of server replicas, for tests: a config of its own
in a temporary folder, round-robin over the replicas, on a loopback port, in the
foreground (``daemon off``) so the test owns the process.

The settings are those docs/serving/deployment.md gives: HTTP/1.1 to the replicas with
keep-alive, ``proxy_buffering off`` (SSE events go out as they come), long read
timeouts (a stream may be quiet between heartbeats), and the WebSocket upgrade headers.
The access log records which replica (``$upstream_addr``) served each request.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.reliability.procs import free_port, port_open

CONFIG = """
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {folder}/access.log upstream;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream replicas {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        return "/usr/sbin/nginx"
    return found


@contextmanager
def load_balancer(folder: Path, upstream_ports: Sequence[int]) -> Iterator[str]:
    """nginx in front of the replicas on ``upstream_ports``; its base URL."""
    binary = nginx_binary()
    assert binary is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
    (folder / "nginx.conf").write_text(CONFIG.format(folder=folder, port=port,
                                                     servers=servers))
    proc = subprocess.Popen([binary, "-p", str(folder), "-e", str(folder / "error.log"),
                             "-c", str(folder / "nginx.conf"),
                             "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {proc.stderr.read()!r}"
                                   if proc.stderr else "nginx did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def upstreams_used(folder: Path) -> list[str]:
    """The replica that served each request, in order (from the access log)."""
    lines = (folder / "access.log").read_text().splitlines()
    return [line.rsplit(" ", 1)[1] for line in lines if line.strip()]
