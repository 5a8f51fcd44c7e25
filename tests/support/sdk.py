"""The official openai SDK as the tests' client, in strict mode.

``_strict_response_validation=True`` makes the SDK parse every body and event in its
own models and raise where one does not fit, so a test fails where a user's SDK would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import openai

if TYPE_CHECKING:
    from tests.support.server import ServerThread


# The tests' connection pools drop an idle connection after 2 s, before the server's
# keep-alive timer (Hypercorn's 5 s) closes it: at httpx's default 5 s a module-scoped
# client idle for ~5 s could send a request on a connection the server was closing
# ("Server disconnected without sending a response"; issue 17). The SDK's own pool
# sizes otherwise.
POOL = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=2.0)


def strict_sdk(server: ServerThread | str, api_key: str = "test", **options: Any
               ) -> openai.OpenAI:
    """The SDK against a test server, or an API root (``.../v1``); no retries unless
    asked for (``max_retries=``). Close it (``with``): Hypercorn's graceful shutdown
    waits for idle keep-alive connections."""
    options.setdefault("max_retries", 0)
    options.setdefault("http_client", openai.DefaultHttpxClient(limits=POOL))
    base_url = server if isinstance(server, str) else server.base_url + "/v1"
    return openai.OpenAI(base_url=base_url, api_key=api_key,
                         _strict_response_validation=True, **options)
