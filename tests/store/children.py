"""A child process that writes to a store and says so, killed with SIGKILL mid-way: the
crash tests of tests/store/ read what it acknowledged, then check the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

REPO_ROOT = Path(__file__).resolve().parents[2]


async def run_and_kill(script: str, args: Sequence[str], kill_after: int
                       ) -> list[dict[str, Any]]:
    """Run ``python -c script *args``, whose stdout is one JSON line per acknowledged
    write; SIGKILL it once more than ``kill_after`` lines came, and return every line it
    wrote before it died (lines already in the pipe are acknowledgements too)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    lines: list[dict[str, Any]] = []
    buffer = b""
    killed = False
    proc = await trio.lowlevel.open_process([sys.executable, "-c", script, *args],
                                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.receive_some():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines.extend(json.loads(line) for line in complete)
            if len(lines) > kill_after and not killed:
                proc.send_signal(signal.SIGKILL)
                killed = True
    finally:
        # Also on failure: never leave the child running.
        if proc.poll() is None:
            proc.kill()
        await proc.wait()
        await proc.stdout.aclose()
    assert proc.returncode == -signal.SIGKILL
    return lines
