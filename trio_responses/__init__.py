"""trio_responses: the OpenAI Responses API on Trio, in front of the vLLM engine.

The public surface is small: :func:`create_app` (the ASGI app, for Hypercorn or
embedding), :class:`Settings`, and :func:`serve` (run it under Hypercorn in your own
Trio program). ``trio_responses:app`` is an app configured from ``TRIO_RESPONSES_*``
environment variables, for ``hypercorn -k trio trio_responses:app``: a small ASGI
object that builds the real app when a server first calls it (see ``web/lazy_app.py``).

Names are resolved on first use, so importing a submodule (the sans-io ``protocol``,
say) never imports the web stack, and importing the package never builds an engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings
from .web.lazy_app import LazyApp

if TYPE_CHECKING:
    from .server import serve
    from .web.app import create_app

__all__ = ["Settings", "app", "create_app", "serve"]
__version__ = "0.1.0"

# A plain module attribute, not a __getattr__ name: Hypercorn's CLI looks it up with
# eval(), which module __getattr__ does not serve.
app = LazyApp()


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .web.app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
