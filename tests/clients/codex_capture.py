"""A request Codex CLI 0.169 really sent (``codex exec``, HTTP, a provider with
``wire_api = "responses"``): its body and headers, captured by a test server, with its
session ids, installation id, paths and the long text of its instructions trimmed.
Its fields, tools and item shapes are as sent."""

from __future__ import annotations

import json
from typing import Any

from tests.support.npm_clients import CLIENTS_DIR

FIRST_REQUEST: dict[str, Any] = json.loads(
    (CLIENTS_DIR / "codex_first_request.json").read_text(encoding="utf-8"))
HEADERS: dict[str, str] = json.loads(
    (CLIENTS_DIR / "codex_request_headers.json").read_text(encoding="utf-8"))
