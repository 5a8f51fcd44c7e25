"""The seed's recommended server flags run as is with ``python -m trio_responses``."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from trio_responses import Settings

REPO = Path(__file__).resolve().parents[2]
RECOMMENDED = [
    "--model", "M",
    "--responses-compatibility-mode",
    "--responses-ping-interval-seconds", "15",
    "--responses-default-service-tier", "auto",
    "--responses-allowed-service-tiers", "auto,default",
    "--max-request-body-bytes", "1048576",
    "--max-stream-event-bytes", "524288",
    "--responses-stream-buffer-max-bytes", "16777216",
    "--responses-tool-timeout", "300",
]
SERVING = re.compile(r"serving M on (http://\S+)")


def test_recommended_flags_parse_with_nothing_left_for_vllm() -> None:
    settings = Settings.from_args(RECOMMENDED, environ={})
    assert settings.vllm_args == ()
    assert settings.model == "M"
    assert settings.responses_compatibility_mode is True
    assert settings.responses_ping_interval_seconds == 15.0
    assert settings.responses_default_service_tier == "auto"
    assert settings.responses_allowed_service_tiers == ("auto", "default")
    assert settings.max_request_body_bytes == 1048576
    assert settings.max_stream_event_bytes == 524288
    assert settings.responses_stream_buffer_max_bytes == 16777216
    assert settings.responses_tool_timeout_seconds == 300.0


def test_unknown_flags_go_to_vllm_and_env_fills_the_rest() -> None:
    settings = Settings.from_args(
        [*RECOMMENDED, "--dtype", "bfloat16", "--api-key", "a", "--api-key", "b"],
        environ={"TRIO_RESPONSES_RATE_LIMIT_REQUESTS_PER_MINUTE": "30",
                 "TRIO_RESPONSES_MAX_REQUEST_BODY_BYTES": "5"})
    assert settings.vllm_args == ("--dtype", "bfloat16")
    assert settings.api_keys == ("a", "b")
    assert settings.rate_limit_requests_per_minute == 30
    assert settings.max_request_body_bytes == 1048576  # the flag wins over the environment


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_python_m_trio_responses_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "TRIO_RESPONSES_STORE_PATH": str(tmp_path / "responses.sqlite3"),
           "PYTHONPATH": str(REPO)}
    seen: list[str] = []
    with subprocess.Popen(
            [sys.executable, "-m", "trio_responses", "--engine", "scripted", *RECOMMENDED,
             "--port", "0"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True) as process:
        output: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_lines, args=(process.stdout, output), daemon=True)
        reader.start()
        try:
            url = None
            while url is None:
                line = output.get(timeout=30)
                seen.append(line)
                match = SERVING.search(line)
                url = match.group(1) if match else None
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.get("/health").json() == {"status": "ok", "model": "M"}
                # The flags took effect: compatibility mode and the tier list.
                refused = client.post("/v1/responses", json={"model": "M", "input": "hi",
                                                             "top_k": 3})
                assert refused.status_code == 400
                assert refused.json()["error"]["param"] == "top_k"
                flex = client.post("/v1/responses", json={"model": "M", "input": "hi",
                                                          "service_tier": "flex"})
                assert flex.json()["error"]["param"] == "service_tier"
                ok = client.post("/v1/responses", json={"model": "M", "input": "hi"})
                assert ok.json()["service_tier"] == "default"
            # SIGTERM: drain (nothing is running), then a clean exit.
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            reader.join(5)
            while not output.empty():
                seen.append(output.get())
    assert not any("Traceback" in line for line in seen), "".join(seen)
    assert any("no API key configured" in line for line in seen)
