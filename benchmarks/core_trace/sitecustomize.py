"""bench_vllm.py --trace: where each engine step's output spends its time in a front end.

Put on ``PYTHONPATH`` of a server that bench_vllm starts (ours or vLLM's: both read the
engine core through vLLM's client), with ``BENCH_CORE_TRACE`` naming a folder. Python
imports this module at start-up; it wraps vLLM's ``SyncMPClient.get_output`` (our bridge's
engine thread) and ``AsyncMPClient.get_output_async`` (vLLM's ``AsyncLLM``) and writes,
per engine-core output that carries request outputs, one line to ``<folder>/<pid>.txt``:
the core's own timestamp of that output (``EngineCoreOutputs.timestamp``), the time the
front end took it from the client, both ``CLOCK_MONOTONIC`` (as the benchmark client's
``time.perf_counter``), and the number of request outputs in it. A benchmark aid, not
part of either server.
"""

from __future__ import annotations

import os
import time
from typing import Any


def _install(folder: str) -> None:
    from vllm.v1.engine import core_client

    # Line-buffered and never closed: the server may end by a signal at any moment.
    out = open(os.path.join(folder, f"{os.getpid()}.txt"), "a", buffering=1)

    def record(outputs: Any) -> None:
        if outputs.outputs:
            out.write(f"{outputs.timestamp} {time.monotonic()} {len(outputs.outputs)}\n")

    sync_get = core_client.SyncMPClient.get_output

    def get_output(self: Any) -> Any:
        outputs = sync_get(self)
        record(outputs)
        return outputs

    async_get = core_client.AsyncMPClient.get_output_async

    async def get_output_async(self: Any) -> Any:
        outputs = await async_get(self)
        record(outputs)
        return outputs

    core_client.SyncMPClient.get_output = get_output  # type: ignore[method-assign]
    core_client.AsyncMPClient.get_output_async = get_output_async  # type: ignore[method-assign]


if os.environ.get("BENCH_CORE_TRACE"):
    _install(os.environ["BENCH_CORE_TRACE"])
