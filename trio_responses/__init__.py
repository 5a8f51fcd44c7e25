"""trio_responses: the OpenAI Responses API on Trio, in front of the vLLM engine.

The public surface is small: :func:`create_app` (the ASGI app, for Hypercorn or
embedding), :class:`Settings`, and :func:`serve` (run it under Hypercorn in your own
Trio program). ``trio_responses:app`` is an app configured from ``TRIO_RESPONSES_*``
environment variables, for ``hypercorn -k trio trio_responses:app``.

Names are resolved on first use, so importing a submodule (the sans-io ``protocol``,
say) never imports the web stack, and importing the package never builds an engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings

if TYPE_CHECKING:
    from .server import serve
    from .web.app import create_app

__all__ = ["Settings", "create_app", "serve"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .web.app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    if name == "app":
        from .web.app import create_app

        application = create_app(Settings.from_env())
        globals()["app"] = application
        return application
    raise AttributeError(name)
