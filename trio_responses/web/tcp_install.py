"""Installing web/tcp_server.py's ``LeanTCPServer`` as Hypercorn's per-connection server.

Hypercorn's trio worker builds each connection with the ``TCPServer`` global of
``hypercorn.trio.run``, looked up when its listeners start, after the lifespan start-up.
Our serve paths replace it before that: ``server.serve_app`` before serving, and
``trio_responses:app`` (``web/lazy_app.py``) at its first call, the start-up, under
``hypercorn -k trio``. Only where Hypercorn is the version ``LeanTCPServer`` was written
for: it rewrites parts of that version's ``TCPServer``, so any other keeps its own (and
web/tcp_server.py, which imports that version's internals, is not even imported).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# The Hypercorn whose trio TCPServer web/tcp_server.py's LeanTCPServer rewrites parts of.
LEAN_TCP_SERVER_FOR = "0.18.0"


def install_tcp_server() -> bool:
    """Have Hypercorn's trio worker serve each connection with web/tcp_server.py's
    ``LeanTCPServer`` (it holds less per idle connection), if Hypercorn is the version it
    was written for and its ``TCPServer`` was not replaced by someone else; otherwise
    Hypercorn's own stays. True if connections are served by ours.

    Called before ``serve``, or from the app's start-up, it is in time (module
    docstring)."""
    try:
        if version("hypercorn") != LEAN_TCP_SERVER_FOR:
            return False
    except PackageNotFoundError:
        return False
    from hypercorn.trio import run as hypercorn_run
    from hypercorn.trio.tcp_server import TCPServer

    from .tcp_server import LeanTCPServer

    # The name the worker builds connections with (a module global of hypercorn.trio.run).
    if getattr(hypercorn_run, "TCPServer", None) is TCPServer:
        setattr(hypercorn_run, "TCPServer", LeanTCPServer)  # noqa: B010
    return getattr(hypercorn_run, "TCPServer", None) is LeanTCPServer
