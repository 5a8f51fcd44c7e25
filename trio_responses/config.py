"""Settings: one frozen record, from command-line flags or ``TRIO_RESPONSES_*`` variables.

Each field is one flag (``shutdown_grace_seconds`` → ``--shutdown-grace-seconds``) and one
environment variable (``TRIO_RESPONSES_SHUTDOWN_GRACE_SECONDS``); flags win over the
environment, which wins over the defaults. Flag names follow vLLM where they overlap
(``--host --port --model --api-key``). Flags this server does not know are vLLM engine
flags (``--dtype --max-model-len --tensor-parallel-size`` …) and pass through to the
engine untouched, in ``vllm_args``.

Every field is declared with :func:`setting`, which takes its ``--help`` line, so a field
cannot be added without one (a test checks), and the old spellings of a renamed field,
which keep working as flags and variables.

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
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRIO_RESPONSES_"
SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority")


def setting(default: Any, help: str, *, metavar: str | None = None,
            default_text: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    """A ``Settings`` field: its default and its ``--help`` line (``metavar``: the value's
    name there; ``default_text``: the default as a user reads it, where the value alone
    says little); ``aliases``: former field names, still read as flags and variables."""
    return field(default=default, metadata={"help": help, "metavar": metavar,
                                            "default_text": default_text,
                                            "aliases": aliases})


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "address to listen on", metavar="HOST")
    port: int = setting(8000, "port to listen on (0: any free one)", metavar="PORT")
    model: str | None = setting(
        None, "model for vLLM to serve: a Hugging Face name or a folder", metavar="MODEL",
        default_text="the embedded SmolLM2-135M-Instruct, on the CPU")
    engine: str = setting(
        "vllm", "'vllm', or 'scripted': a deterministic engine with no model, which echoes "
        "the last user message", metavar="ENGINE")
    scripted_token_delay_seconds: float = setting(
        0.0, "seconds between the scripted engine's tokens",
        aliases=("scripted_token_delay",))
    scripted_pacing: str = setting(
        "step", "how the scripted engine paces its tokens: 'step', one timer for all "
        "streams and each step's deltas handed over together, as a GPU engine steps; or "
        "'stream', one timer per stream. Each stream gets one token per delay either way",
        metavar="PACING")
    store_path: str = setting(
        "", "SQLite file of stored responses", metavar="PATH",
        default_text="responses.sqlite3 in $XDG_DATA_HOME/trio_responses "
        "(~/.local/share/trio_responses)")
    store_ttl_days: float = setting(
        30.0, "days a stored response is kept after it was created, as OpenAI keeps them; "
        "a background sweep deletes older finished ones (0: kept until deleted)")
    store_max_bytes_per_key: int = setting(
        0, "most bytes of stored responses per API key; the sweep deletes a key's oldest "
        "finished responses past it (0: no quota)")
    store_sweep_interval_seconds: float = setting(
        600.0, "seconds between retention sweeps (--store-ttl-days, "
        "--store-max-bytes-per-key)")
    store_read_connections: int = setting(
        8, "SQLite connections for reads beside the one for writes, so a slow read blocks "
        "neither writes nor other reads (0: reads share the writer's)")
    store_url: str = setting(
        "", "a PostgreSQL database every replica behind a load balancer shares, as "
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (a libpq URI; ?host=/run/postgresql "
        "for a Unix socket); instead of --store-path", metavar="URL",
        default_text="none: the SQLite file of --store-path")
    store_pool_size: int = setting(
        8, "with --store-url: most connections this process opens to the database (one "
        "more listens for the other replicas)")
    store_lease_seconds: float = setting(
        30.0, "with --store-url: a replica whose heartbeat is older than this counts as "
        "gone, and another replica marks its running responses failed")
    cache_dir: str = setting(
        "", "folder the embedded default model is prepared in", metavar="DIR",
        default_text="$XDG_CACHE_HOME/trio_responses (~/.cache/trio_responses)")
    api_keys: tuple[str, ...] = setting(
        (), "a Bearer key clients must send (repeat the flag for more keys; comma-separated "
        "in the variable)", metavar="KEY", default_text="none: the server is open to anyone")
    responses_ping_interval_seconds: float = setting(
        15.0, "send a heartbeat after this long without another event in a stream: an SSE "
        "comment (': ping'), which every client skips, or a response.ping event (see "
        "--responses-ping-events) (0: never)")
    # Why comments by default: the TypeScript SDK's stream helper and the strict Python
    # SDK fail on an event type they do not know, and the Open Responses spec wants
    # extension events prefixed; every SSE client skips a comment.
    responses_ping_events: bool = setting(
        False, "send heartbeats as response.ping events (numbered like every event) "
        "instead of SSE comments; a request's X-Responses-Ping-Events header (true or "
        "false) decides for its own stream. Not with --responses-compatibility-mode")
    # Why off by default: the TypeScript SDK's stream helper throws on this event type
    # (the x-ratelimit-* headers carry the same figures, on every response).
    responses_rate_limit_events: bool = setting(
        False, "send a response.rate_limits.updated event at the start of each stream "
        "while rate limits are on; a request's X-Responses-Rate-Limit-Events header (true "
        "or false) decides for its own stream. Not with --responses-compatibility-mode")
    responses_compatibility_mode: bool = setting(
        False, "serve only what OpenAI's API has (no vLLM extensions, no extra events), "
        "for clients that validate strictly")
    responses_reject_hosted_tools: bool = setting(
        False, "refuse requests that declare hosted tools (web_search, file_search, "
        "code_interpreter, mcp, ...), which this server cannot run, with 400 instead of "
        "accepting them and never calling them")
    sealing_key_file: str = setting(
        "", "file of the keys that seal encrypted reasoning and compaction items: one "
        "base64 32-byte key per line, the first seals, every one opens (to rotate, put a "
        "new key first); replicas share it", metavar="PATH",
        default_text="sealing.keys in the cache folder, created with a new key if absent")
    responses_default_service_tier: str = setting(
        "auto", "service tier of a request that asks for none", metavar="TIER")
    responses_allowed_service_tiers: tuple[str, ...] = setting(
        SERVICE_TIERS, "service tiers a request may ask for (comma-separated)",
        metavar="TIERS")
    api_key_service_tiers: tuple[str, ...] = setting(
        (), "the service tiers one API key may ask for, instead of "
        "--responses-allowed-service-tiers: KEY=TIER,TIER (repeat the flag for more keys; "
        "';' between keys in the variable); its 'priority' field may ask for no more than "
        "its best tier", metavar="KEY=TIERS",
        default_text="every key gets --responses-allowed-service-tiers")
    max_request_body_bytes: int = setting(
        16 * 1024 * 1024, "largest request body; larger ones get 413 (0: no limit)")
    max_stream_event_bytes: int = setting(
        4 * 1024 * 1024, "largest event a stream sends (0: no limit)")
    responses_stream_buffer_max_bytes: int = setting(
        16 * 1024 * 1024, "most unsent bytes a stream holds for a slow reader before the "
        "response ends with an error (0: no limit)")
    max_background_log_bytes: int = setting(
        32 * 1024 * 1024, "memory a background response's event log may hold (its frames "
        "and the objects behind them) before it is cut: then only the first and the final "
        "events are kept, and a reader further behind gets the final event (0: no limit)")
    responses_tool_timeout_seconds: float = setting(
        300.0, "how long a response waits for tool outputs (X-Responses-Tool-Wait) before "
        "it ends incomplete", aliases=("responses_tool_timeout",))
    responses_max_stream_seconds: float = setting(
        0.0, "longest a response may run before it ends with a terminal event (0: no limit)")
    rate_limit_requests_per_minute: int = setting(
        0, "requests a key may make per minute; more get 429 (0: no limit)")
    rate_limit_tokens_per_minute: int = setting(
        0, "tokens a key may use per minute; more get 429 (0: no limit)")
    max_queued_requests: int = setting(
        0, "refuse new responses (503) while the engine holds this many requests (0: no "
        "limit)")
    max_queued_requests_per_key: int = setting(
        0, "with --max-queued-requests: the most of them one API key may hold; more get "
        "429, so one key cannot fill the queue (0: half of --max-queued-requests, rounded "
        "up)")
    max_responses_per_key: int = setting(
        256, "most responses one API key may have running at once (foreground, streamed "
        "and background); more get 429 (0: no limit)")
    max_streams_per_key: int = setting(
        128, "most event streams one API key may have open at once (streamed creates and "
        "GET ?stream=true); more get 429 (0: no limit)")
    max_concurrent_reads_per_key: int = setting(
        4, "most requests one API key may have reading the store or counting tokens at once "
        "(GET of a response, input_items, input_tokens, cancel, delete, the start of a "
        "resume, the Conversations API); more wait their turn (0: no limit)")
    allowed_hosts: tuple[str, ...] = setting(
        (), "Host header values accepted besides IP addresses and localhost: names, "
        "'.example.com' for a domain and its subdomains, '*' for any (comma-separated); "
        "enforced when no --api-key is configured, or when given; other hosts get 421 "
        "(DNS rebinding)", metavar="HOSTS",
        default_text="none: IP addresses and localhost only, when no key is configured")
    h2c: bool = setting(
        False, "serve HTTP/2 over cleartext (an h2c upgrade or prior knowledge); off, "
        "requests that arrive that way get 505")
    max_conversation_items: int = setting(
        10_000, "most items a conversation holds; adding more (as items, or as a response's "
        "input) is refused with 400 conversation_full (0: no limit)")
    max_conversation_item_bytes: int = setting(
        1024 * 1024, "largest item (its JSON) a client may add to a conversation, as an item "
        "or in a response's input; larger ones are refused with 400 item_too_large (0: no "
        "limit)")
    conversation_lock_timeout_seconds: float = setting(
        120.0, "how long a response (or an items append) waits for the response already "
        "running on its conversation before 409 conversation_locked (0: no limit)")
    shutdown_grace_seconds: float = setting(
        10.0, "how long SIGTERM/SIGINT waits for live responses to end before cancelling "
        "them")
    # Why: Hypercorn's writes have no timeout of their own, so without it a client that
    # stopped reading (or a dead network) holds its connection, and shutdown, forever.
    tcp_user_timeout_seconds: float = setting(
        60.0, "drop a connection whose peer acknowledges nothing for this long "
        "(TCP_USER_TIMEOUT, Linux; 0: the OS default)")
    # Why a setting: Hypercorn's keep-alive timer is two things at once. It closes a
    # connection idle between requests, and one that has not sent its first request (or
    # sends its head a byte at a time: the slow-loris defence, tests/reliability). Its 5 s
    # equals httpx's pool expiry (the openai SDK's), so a request sent on a pooled
    # connection as the timer closes it can fail with "Server disconnected without
    # sending a response" (the SDK retries it; issue 17). Raise it when clients' pools
    # keep connections longer; the client side is fixed by expiring its pool sooner.
    keep_alive_timeout_seconds: float = setting(
        5.0, "close a keep-alive connection idle this long between requests, or a new "
        "one that has not sent its request head by then")
    # Why a setting: Hypercorn listens with a backlog of 100, so a burst of more new
    # connections than that (a thousand clients reconnecting at once) is refused or
    # dropped by the kernel before the server sees it. 2048 is uvicorn's default; Linux
    # caps it at net.core.somaxconn.
    backlog: int = setting(
        2048, "most connections waiting to be accepted (the listen backlog)", metavar="N")
    log_level: str = setting("info", "debug, info, warning or error", metavar="LEVEL")
    # No flag of its own: every flag the parser does not know (see the --help epilog).
    vllm_args: tuple[str, ...] = setting(
        (), "vLLM engine flags, passed to the engine as given (shell-quoted in the "
        "variable)")

    def __post_init__(self) -> None:
        if self.engine not in ("vllm", "scripted"):
            raise ValueError(f"engine must be 'vllm' or 'scripted', not {self.engine!r}")
        if self.scripted_pacing not in ("step", "stream"):
            raise ValueError("scripted pacing must be 'step' or 'stream', not "
                             f"{self.scripted_pacing!r}")
        for tier in (self.responses_default_service_tier, *self.responses_allowed_service_tiers):
            if tier not in SERVICE_TIERS:
                known = ", ".join(SERVICE_TIERS)
                raise ValueError(f"unknown service tier {tier!r}; known: {known}")
        if self.responses_ping_events and self.responses_compatibility_mode:
            raise ValueError("responses_ping_events sends an event type OpenAI's API does not "
                             "have: it cannot be the default in compatibility mode (a "
                             "request can still ask for it with X-Responses-Ping-Events)")
        if self.responses_rate_limit_events and self.responses_compatibility_mode:
            raise ValueError("responses_rate_limit_events sends an event type OpenAI's API "
                             "does not have: it cannot be the default in compatibility mode "
                             "(a request can still ask for it with "
                             "X-Responses-Rate-Limit-Events)")
        for name in ("port", "max_request_body_bytes", "max_stream_event_bytes",
                     "responses_stream_buffer_max_bytes", "tcp_user_timeout_seconds",
                     "keep_alive_timeout_seconds",
                     "max_background_log_bytes", "store_read_connections",
                     "store_ttl_days", "store_max_bytes_per_key",
                     "max_conversation_items", "max_conversation_item_bytes",
                     "conversation_lock_timeout_seconds",
                     "max_queued_requests", "max_queued_requests_per_key",
                     "max_responses_per_key", "max_streams_per_key",
                     "max_concurrent_reads_per_key"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.store_url and not self.store_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("--store-url must be a postgresql:// URL (the SQLite file is "
                             "--store-path)")
        if self.store_url and self.store_path:
            raise ValueError("give --store-url or --store-path, not both")
        if self.backlog < 1:
            raise ValueError("backlog must be at least 1")
        if self.store_pool_size < 1:
            raise ValueError("store_pool_size must be at least 1")
        if self.store_lease_seconds <= 0:
            raise ValueError("store_lease_seconds must be positive")
        self.service_tiers_by_key()  # checks the entries

    def service_tiers_by_key(self) -> dict[str, tuple[str, ...]]:
        """``--api-key-service-tiers``: each configured key → the tiers it may ask for."""
        tiers_by_key: dict[str, tuple[str, ...]] = {}
        for entry in self.api_key_service_tiers:
            key, separator, listed = entry.rpartition("=")
            tiers = tuple(tier.strip() for tier in listed.split(",") if tier.strip())
            if not separator or not tiers:
                raise ValueError("an --api-key-service-tiers entry is KEY=TIER[,TIER...]")
            if key not in self.api_keys:
                raise ValueError("an --api-key-service-tiers entry names a key that is not "
                                 "configured with --api-key")
            for tier in tiers:
                if tier not in SERVICE_TIERS:
                    raise ValueError(f"unknown service tier {tier!r}; known: "
                                     f"{', '.join(SERVICE_TIERS)}")
            tiers_by_key[key] = tiers
        return tiers_by_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            # The current name wins over the old ones.
            for name in (f.name, *f.metadata["aliases"]):
                raw = environ.get(env_name(name))
                if raw is not None:
                    values[f.name] = _convert(f, raw)
                    break
        return cls(**values)

    @classmethod
    def from_args(
        cls, argv: Sequence[str], environ: Mapping[str, str] | None = None
    ) -> Settings:
        base = cls.from_env(environ)
        parser = build_parser()
        namespace, unknown = parser.parse_known_args(list(argv))
        values = {k: v for k, v in vars(namespace).items() if v is not None}
        for name in REPEATABLE:
            if name in values:
                values[name] = tuple(values[name])
        values["vllm_args"] = (*base.vllm_args, *unknown)
        return dataclasses.replace(base, **values)

    def store_file(self) -> Path:
        """The SQLite file: ``store_path``, else :func:`default_store_path`."""
        return Path(self.store_path) if self.store_path else default_store_path()

    def sealing_key_path(self) -> Path:
        """The sealing key file: ``sealing_key_file``, else ``sealing.keys`` in the cache
        folder (created when absent; a file named by the flag must exist)."""
        if self.sealing_key_file:
            return Path(self.sealing_key_file).expanduser()
        return self.cache_folder() / "sealing.keys"

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
    if f.name == "api_key_service_tiers":  # each entry holds commas of its own
        return tuple(part.strip() for part in raw.split(";") if part.strip())
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "bool":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw


EPILOG = """\
vLLM engine flags:
  Any flag not listed above is a vLLM engine flag and goes to the engine as given, with
  vLLM's names and meanings (env: TRIO_RESPONSES_VLLM_ARGS, shell-quoted): --dtype,
  --max-model-len, --tensor-parallel-size, --pipeline-parallel-size,
  --data-parallel-size, --gpu-memory-utilization, --enforce-eager,
  --served-model-name ... (`vllm serve --help` lists them). vLLM's output parsers and
  chat template work as in its server: --reasoning-parser, --tool-call-parser with
  --enable-auto-tool-choice, their --*-parser-plugin, --chat-template. Defaults that
  differ from vLLM's: --scheduling-policy priority; without a GPU, --dtype float32.

Every flag has an environment variable, shown with it; flags win over variables, which
win over defaults. Booleans in variables: 1, true, yes or on.
"""


# Fields given once per value, by repeating their flag.
REPEATABLE = {"api_keys": "--api-key", "api_key_service_tiers": "--api-key-service-tiers"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def default_text(f: dataclasses.Field[Any]) -> str:
    """A field's default as ``--help`` shows it."""
    if f.metadata["default_text"] is not None:
        return str(f.metadata["default_text"])
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    if isinstance(f.default, tuple):
        return ",".join(f.default)
    return str(f.default)


def help_line(f: dataclasses.Field[Any]) -> str:
    """What a field's flag does, its default and its variable (and its old spellings)."""
    line = f"{f.metadata['help']} [default: {default_text(f)}; env: {env_name(f.name)}"
    for alias in f.metadata["aliases"]:
        line += f"; formerly {_flag(alias)}, {env_name(alias)}"
    # argparse formats help with %-style: a literal % would break it.
    return line.replace("%", "%%") + "]"


def _metavar(f: dataclasses.Field[Any], kind: str) -> str:
    if f.metadata["metavar"] is not None:
        return str(f.metadata["metavar"])
    if f.name.endswith("_bytes"):
        return "BYTES"
    return {"float": "SECONDS", "int": "N"}.get(kind, "VALUE")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's, but a help line wraps only at spaces: a flag or a variable named in it
    is never cut in two (argparse cuts at hyphens, and inside words longer than a line)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False,
                             break_long_words=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_responses",
        usage="%(prog)s [--model MODEL] [flags] [vLLM engine flags]",
        description="The OpenAI Responses API on Trio, in front of the vLLM engine.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    for f in fields(Settings):
        if f.name == "vllm_args":
            continue
        kind = _kind(f)
        if f.name in REPEATABLE:
            parser.add_argument(REPEATABLE[f.name], dest=f.name, action="append",
                                metavar=_metavar(f, kind), help=help_line(f))
            continue
        options: dict[str, Any] = {"dest": f.name, "default": None}
        if kind == "bool":
            options["action"] = "store_true"
        elif kind.startswith("tuple"):
            options.update(metavar=_metavar(f, kind), type=_to_tuple)
        else:
            options.update(metavar=_metavar(f, kind),
                           type={"int": int, "float": float}.get(kind, str))
        parser.add_argument(_flag(f.name), help=help_line(f), **options)
        for alias in f.metadata["aliases"]:
            parser.add_argument(_flag(alias), **options, help=argparse.SUPPRESS)
    return parser


def _to_tuple(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part)
