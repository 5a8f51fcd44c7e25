"""Settings: one frozen record, from command-line flags or ``TRIO_RESPONSES_*`` variables.

Each field is one flag (``responses_tool_timeout`` → ``--responses-tool-timeout``) and one
environment variable (``TRIO_RESPONSES_RESPONSES_TOOL_TIMEOUT``); flags win over the
environment, which wins over the defaults. Flag names follow vLLM where they overlap
(``--host --port --model --api-key``). Flags this server does not know are vLLM engine
flags (``--dtype --max-model-len --tensor-parallel-size`` …) and pass through to the
engine untouched, in ``vllm_args``.

This is the one module that reads ``TRIO_RESPONSES_*`` variables. The rest of the package
gets values passed in; where a file's place is left unset (``store_path``, ``cache_dir``),
:func:`default_store_path` and :func:`default_cache_dir` say where it goes, from the same
variables and the XDG base directories, for the entry points that have no ``Settings``
(``python -m trio_responses.engine.default_model``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRIO_RESPONSES_"
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    # None: the embedded default model (SmolLM2-135M-Instruct on vLLM's CPU engine).
    model: str | None = None
    # "vllm", or "scripted": the deterministic engine with no model.
    engine: str = "vllm"
    scripted_token_delay: float = 0.0
    # SQLite file for stored responses; "" means the default under the user's data folder.
    store_path: str = ""
    # Folder the default model is prepared in; "" means the default under the user's
    # cache folder.
    cache_dir: str = ""
    # Bearer keys; none configured means the server is open.
    api_keys: tuple[str, ...] = ()
    responses_ping_interval_seconds: float = 15.0
    responses_compatibility_mode: bool = False
    responses_default_service_tier: str = "auto"
    responses_allowed_service_tiers: tuple[str, ...] = SERVICE_TIERS
    max_request_body_bytes: int = 16 * 1024 * 1024
    max_stream_event_bytes: int = 4 * 1024 * 1024
    responses_stream_buffer_max_bytes: int = 16 * 1024 * 1024
    responses_tool_timeout: float = 300.0
    # Longest a stream may run before it is ended with a terminal event (0: no limit).
    responses_max_stream_seconds: float = 0.0
    rate_limit_requests_per_minute: int = 0
    rate_limit_tokens_per_minute: int = 0
    max_queued_requests: int = 0
    # Seconds SIGTERM/SIGINT waits for live responses to end before cancelling them.
    shutdown_grace_seconds: float = 10.0
    # TCP_USER_TIMEOUT of every connection (Linux): a peer that acknowledges nothing for
    # this long (a dead network, or a client that stopped reading) is disconnected, so a
    # blocked write cannot hold a connection, or shutdown, forever. 0: the OS default.
    tcp_user_timeout_seconds: float = 60.0
    log_level: str = "info"
    # vLLM engine flags, passed through as given.
    vllm_args: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.engine not in ("vllm", "scripted"):
            raise ValueError(f"engine must be 'vllm' or 'scripted', not {self.engine!r}")
        for tier in (self.responses_default_service_tier, *self.responses_allowed_service_tiers):
            if tier not in SERVICE_TIERS:
                known = ", ".join(SERVICE_TIERS)
                raise ValueError(f"unknown service tier {tier!r}; known: {known}")
        for name in ("port", "max_request_body_bytes", "max_stream_event_bytes",
                     "responses_stream_buffer_max_bytes", "tcp_user_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                values[f.name] = _convert(f, raw)
        return cls(**values)

    @classmethod
    def from_args(
        cls, argv: Sequence[str], environ: Mapping[str, str] | None = None
    ) -> Settings:
        base = cls.from_env(environ)
        parser = build_parser()
        namespace, unknown = parser.parse_known_args(list(argv))
        values = {k: v for k, v in vars(namespace).items() if v is not None}
        if "api_keys" in values:
            values["api_keys"] = tuple(values["api_keys"])
        values["vllm_args"] = (*base.vllm_args, *unknown)
        return dataclasses.replace(base, **values)

    def store_file(self) -> Path:
        """The SQLite file: ``store_path``, else :func:`default_store_path`."""
        return Path(self.store_path) if self.store_path else default_store_path()

    def cache_folder(self) -> Path:
        """The cache folder: ``cache_dir``, else :func:`default_cache_dir`."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def env_name(field_name: str) -> str:
    """The environment variable of a ``Settings`` field."""
    return ENV_PREFIX + field_name.upper()


def default_store_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$TRIO_RESPONSES_STORE_PATH`` if set, else ``responses.sqlite3`` in the XDG data
    directory (``$XDG_DATA_HOME``, or ``~/.local/share`` when that is unset or relative,
    as the XDG spec says to ignore relative values)."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(env_name("store_path"))
    if explicit:
        return Path(explicit).expanduser()
    data_home = environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "trio_responses" / "responses.sqlite3"


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$TRIO_RESPONSES_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/trio_responses``, else
    ``~/.cache/trio_responses``."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(env_name("cache_dir"))
    if explicit:
        return Path(explicit).expanduser()
    xdg = environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "trio_responses"


def _kind(f: dataclasses.Field[Any]) -> str:
    return str(f.type).replace("None", "").replace("|", "").strip()


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = _kind(f)
    if f.name == "vllm_args":
        return tuple(shlex.split(raw))
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_responses",
        description="OpenAI Responses API server on Trio, in front of vLLM. Flags not "
        "listed here are vLLM engine flags and are passed to the engine.",
        allow_abbrev=False,
    )
    for f in fields(Settings):
        if f.name == "vllm_args":
            continue
        kind = _kind(f)
        if f.name == "api_keys":
            parser.add_argument("--api-key", dest="api_keys", action="append",
                                help="a Bearer key clients must send (repeatable)")
            continue
        flag = "--" + f.name.replace("_", "-")
        if kind == "bool":
            parser.add_argument(flag, dest=f.name, action="store_true", default=None)
        elif kind.startswith("tuple"):
            parser.add_argument(flag, dest=f.name, default=None,
                                type=lambda raw: tuple(p.strip() for p in raw.split(",") if p))
        else:
            conv = {"int": int, "float": float}.get(kind, str)
            parser.add_argument(flag, dest=f.name, default=None, type=conv)
    return parser
