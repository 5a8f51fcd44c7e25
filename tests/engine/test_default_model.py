"""The default model's preparation: once, atomically, never trusting a partial folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trio_responses.engine import default_model

FINGERPRINT: dict[str, object] = {"format": 1, "source": "fake", "version": "1", "size": 3}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRIO_RESPONSES_CACHE_DIR", str(tmp_path))
    source = tmp_path / "model.gguf"
    source.write_bytes(b"abc")
    monkeypatch.setattr(default_model, "gguf_source", lambda: (source, dict(FINGERPRINT)))
    return tmp_path


def fake_convert(calls: list[Path]) -> object:
    def convert(source: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
        (out / "model.safetensors").write_bytes(b"weights")

    return convert


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_RESPONSES_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert default_model.cache_root() == Path("/x/trio_responses")
    monkeypatch.setenv("TRIO_RESPONSES_CACHE_DIR", "/y")
    assert default_model.default_model_dir() == Path("/y/models/SmolLM2-135M-Instruct")


def test_prepared_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(default_model, "_convert", fake_convert(calls))
    path = default_model.ensure_default_model()
    assert path == cache / "models" / "SmolLM2-135M-Instruct"
    assert (path / "model.safetensors").read_bytes() == b"weights"
    assert default_model.is_prepared(path, FINGERPRINT)
    assert default_model.ensure_default_model() == path
    assert len(calls) == 1
    # Built beside the target, then moved: no temporary folder is left.
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".SmolLM2-135M-Instruct.lock",
        "SmolLM2-135M-Instruct",
    ]


def test_interrupted_preparation_leaves_nothing(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(source: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(default_model, "_convert", broken)
    with pytest.raises(KeyboardInterrupt):
        default_model.ensure_default_model()
    models = cache / "models"
    assert [p.name for p in models.iterdir()] == [".SmolLM2-135M-Instruct.lock"]


def test_partial_or_outdated_folders_are_rebuilt(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(default_model, "_convert", fake_convert(calls))
    target = default_model.default_model_dir()
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"partial, from a killed process")
    leftover = target.parent / ".SmolLM2-135M-Instruct.tmp-old"
    leftover.mkdir()
    assert default_model.ensure_default_model() == target
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert not leftover.exists()
    # Another source version: the marker no longer matches, so it is prepared again.
    newer = dict(FINGERPRINT, version="2")
    monkeypatch.setattr(default_model, "gguf_source", lambda: (cache / "model.gguf", newer))
    default_model.ensure_default_model()
    assert len(calls) == 2
    assert default_model.is_prepared(target, newer)
