"""``trio_responses.engine`` is where a user finds the protocol to implement (README)."""

from __future__ import annotations

import subprocess
import sys

import trio_responses.engine
from trio_responses.engine import base


def test_the_package_re_exports_the_protocol_and_every_record() -> None:
    public = {name for name, value in vars(base).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == base.__name__}
    assert public <= set(trio_responses.engine.__all__)
    assert "FinishReason" in trio_responses.engine.__all__
    for name in trio_responses.engine.__all__:
        assert getattr(trio_responses.engine, name) is getattr(base, name)


def test_importing_the_package_imports_no_engine() -> None:
    code = ("import sys, trio_responses.engine\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'vllm'\n"
            "             or m.startswith(('trio_responses.engine.vllm',\n"
            "                              'trio_responses.engine.scripted'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
