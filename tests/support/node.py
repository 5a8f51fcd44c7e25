"""Driving the real npm clients (tests/clients/*.mjs) from pytest.

Each driver script talks to a server given by ``BASE_URL`` (the API root, with ``/v1``)
and ``MODEL``, and prints one JSON line: what the client saw, or the error it reported,
and the heartbeats that went by on the wire. The clients and Node 22 are pinned in
tests/clients/package.json; ``npm ci --prefix tests/clients`` (``scripts/setup
--test-clients``) installs them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
NODE = CLIENTS / "node_modules" / ".bin" / "node"


def require_node_clients() -> None:
    """Skip unless the npm test clients are installed."""
    if not NODE.exists():
        pytest.skip("the npm test clients are not installed (tests/clients/node_modules): "
                    "run npm ci --prefix tests/clients, or scripts/setup --test-clients")


def run_node_client(script: str, *args: str, base_url: str, model: str,
                    env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
    """Run ``tests/clients/<script>`` with ``args``; its JSON report."""
    require_node_clients()
    done = subprocess.run(
        [str(NODE), script, *args], cwd=CLIENTS, capture_output=True, text=True,
        timeout=timeout,
        env={**os.environ, "BASE_URL": base_url, "MODEL": model, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, f"no report from {script}; stderr: {done.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report
