"""``python -m trio_responses [--model M] [flags]``: serve the Responses API."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .config import Settings, build_parser
from .server import serve
from .web.state import build_engine


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if "-h" in args or "--help" in args:
        build_parser().print_help()
        return 0
    try:
        settings = Settings.from_args(args)
    except (ValueError, SystemExit) as exc:
        print(f"trio_responses: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Build the engine before the event loop runs: importing vLLM and preparing the
    # default model block for tens of seconds.
    try:
        engine = build_engine(settings)
    except ValueError as exc:  # bad vLLM engine flags
        print(f"trio_responses: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, settings, engine=engine))
            logging.getLogger("trio_responses").info(
                "serving %s on %s", settings.model or "the default model", ", ".join(binds))

    trio.run(run)
    # Skip the final collection of the engine's (large) object graph at exit.
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
