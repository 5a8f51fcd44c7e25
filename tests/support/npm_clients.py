"""The npm clients the tests drive (tests/clients/package.json: Codex CLI, the openai
TypeScript SDK, the Vercel AI SDK, and the Node 22 they need), installed into
tests/clients/node_modules by ``scripts/setup --test-clients`` (``scripts/test`` passes it)
or by hand with ``npm ci --prefix tests/clients --no-audit --no-fund``.

A test that needs one asks :func:`npm_client` for it: it is skipped, saying why, only
when the clients are not installed at all; a client missing from an installed
node_modules is an error, not a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CLIENTS_DIR = Path(__file__).resolve().parents[1] / "clients"
NODE_MODULES = CLIENTS_DIR / "node_modules"


def npm_client(name: str) -> Path:
    """The executable ``tests/clients/node_modules/.bin/<name>`` (``codex``, ``node``)."""
    if not NODE_MODULES.is_dir():
        pytest.skip(f"the npm test clients are not installed ({NODE_MODULES} is missing): "
                    "run `npm ci --prefix tests/clients --no-audit --no-fund`, or "
                    "scripts/setup --test-clients")
    path = NODE_MODULES / ".bin" / name
    assert path.exists(), (f"{path} is missing from the installed npm test clients: run "
                           "`npm ci --prefix tests/clients --no-audit --no-fund` again")
    return path
