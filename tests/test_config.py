"""Configuration is read in one place: ``config.py`` maps flags and ``TRIO_RESPONSES_*``
variables to ``Settings``, and the rest of the package gets values passed in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import trio_responses
from trio_responses.config import Settings, default_cache_dir
from trio_responses.engine import default_model
from trio_responses.engine.vllm import args as vllm_args
from trio_responses.web.state import build_engine

PACKAGE = Path(trio_responses.__file__).parent


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string nodes that are docstrings (prose, not reads)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_only_config_names_trio_responses_variables() -> None:
    """A ``TRIO_RESPONSES_`` name spelled in code (or the prefix constant used) anywhere
    but config.py would be a second reader of the environment."""
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "config.py":
            continue
        tree = ast.parse(path.read_text())
        prose = docstrings(tree)
        for node in ast.walk(tree):
            spelled = (isinstance(node, ast.Constant) and isinstance(node.value, str)
                       and "TRIO_RESPONSES_" in node.value and id(node) not in prose)
            prefix = (isinstance(node, ast.Name | ast.alias)
                      and "ENV_PREFIX" in (getattr(node, "id", None), getattr(node, "name", None)))
            if spelled or prefix:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}")
    assert not wrong, wrong


def test_cache_dir_is_a_setting() -> None:
    assert Settings.from_args(["--cache-dir", "/c"], environ={}).cache_dir == "/c"
    from_env = Settings.from_args([], environ={"TRIO_RESPONSES_CACHE_DIR": "/e"})
    assert from_env.cache_folder() == Path("/e")
    assert Settings(cache_dir="~/c").cache_folder() == Path("~/c").expanduser()
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/trio_responses")
    assert default_cache_dir({}) == Path.home() / ".cache" / "trio_responses"


def test_the_engine_prepares_the_default_model_in_the_settings_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Path | None] = []

    def prepared(cache_dir: Path | None = None) -> Path:
        asked.append(cache_dir)
        return default_model.default_model_dir(cache_dir)

    monkeypatch.setattr(vllm_args, "ensure_default_model", prepared)
    engine = build_engine(Settings(cache_dir=str(tmp_path)))
    assert engine.model_name == default_model.MODEL_NAME
    assert asked == [tmp_path]
