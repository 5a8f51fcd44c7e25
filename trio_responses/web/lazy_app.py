"""``trio_responses:app``: the server configured from ``TRIO_RESPONSES_*``, built on first use.

Hypercorn's CLI (``hypercorn -k trio trio_responses:app``) finds the app with
``eval("app", vars(module))``, which never calls a module's ``__getattr__``, so the
package has to hold a real object under that name; yet importing the package must stay
cheap (no Quart, no Hypercorn, no engine). :class:`LazyApp` is that object: an ASGI app
that builds the real one (``create_app(Settings.from_env())``) the first time a server
calls it, which is the lifespan start-up, before any request; every call after that goes
straight to the real app. In each Hypercorn worker process (``--workers N``) the package
is imported anew, so each builds its own app, and its own engine. Under Hypercorn's trio
worker, that first call also installs our per-connection server (``tcp_install.py``), in
time for the listeners, which start after the start-up.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import Settings

if TYPE_CHECKING:
    from quart_trio import QuartTrio


class LazyApp:
    def __init__(self, settings: Callable[[], Settings] = Settings.from_env) -> None:
        self._settings = settings
        self._app: QuartTrio | None = None

    @property
    def app(self) -> QuartTrio:
        """The real app, built the first time it is asked for."""
        if self._app is None:
            from .app import create_app

            self._app = create_app(self._settings())
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None and "hypercorn.trio.run" in sys.modules:
            from .tcp_install import install_tcp_server

            install_tcp_server()
        await self.app(scope, receive, send)
