"""``python -m trio_responses [--model M] [flags]``: serve the Responses API."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import trio

from .config import Settings, build_parser
from .server import serve


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

    async def run() -> None:

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, settings)
            logging.getLogger("trio_responses").info(
                "serving %s on %s", settings.model or "the default model", ", ".join(binds))

    trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
