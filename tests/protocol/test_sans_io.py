"""protocol/ is sans-io: no I/O library is imported by it, directly or through the
package modules it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import trio_responses
import trio_responses.protocol

FORBIDDEN = {"trio", "quart", "quart_trio", "hypercorn", "vllm", "asyncio", "anyio",
             "sqlite3", "socket", "httpx", "threading"}
PACKAGE = Path(trio_responses.__file__).parent
PROTOCOL = Path(trio_responses.protocol.__file__).parent


def imported_modules(source: str, package: tuple[str, ...]) -> set[str]:
    """Absolute names of every module ``source`` (a module of ``package``) imports,
    relative imports resolved, imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
    return names


def module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "trio_responses":
        return None
    candidate = PACKAGE.parent.joinpath(*parts)
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def test_protocol_sources_import_no_io_library() -> None:
    sources = sorted(PROTOCOL.glob("*.py"))
    assert len(sources) >= 7
    seen: set[Path] = set()
    pending = list(sources)
    offenders: list[str] = []
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        package = path.relative_to(PACKAGE.parent).parts[:-1]
        for name in imported_modules(path.read_text(), package):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
            inner = module_path(name)
            if inner is not None and inner != PACKAGE / "__init__.py":
                pending.append(inner)
    assert not offenders, offenders
    # The walk followed protocol's imports out of the package folder (errors.py).
    assert PACKAGE / "errors.py" in seen


def test_importing_protocol_loads_no_io_library() -> None:
    modules = ", ".join(sorted(f"trio_responses.protocol.{p.stem}"
                               for p in PROTOCOL.glob("*.py") if p.stem != "__init__"))
    code = (f"import sys, {modules}\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=PACKAGE.parent)
    assert result.stdout.strip() == ""


def test_the_scan_sees_every_import_form() -> None:
    source = (
        "import os, trio.lowlevel\n"
        "from quart_trio import QuartTrio\n"
        "from ..runtime import buffer\n"
        "from . import sse\n"
        "def f():\n    import vllm\n"
    )
    names = imported_modules(source, ("trio_responses", "protocol"))
    assert {"os", "trio.lowlevel", "quart_trio", "vllm", "trio_responses.runtime.buffer",
            "trio_responses.protocol.sse"} <= names
    assert module_path("trio_responses.runtime.buffer") == PACKAGE / "runtime" / "buffer.py"
    assert module_path("trio_responses.protocol") == PROTOCOL / "__init__.py"
    assert module_path("msgspec") is None
