"""The official openai SDK as the tests' client, in strict mode.

``_strict_response_validation=True`` makes the SDK parse every body and event in its
own models and raise where one does not fit, so a test fails where a user's SDK would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai

if TYPE_CHECKING:
    from tests.support.server import ServerThread


def strict_sdk(server: ServerThread | str, api_key: str = "test", **options: Any
               ) -> openai.OpenAI:
    """The SDK against a test server, or an API root (``.../v1``); no retries unless
    asked for (``max_retries=``). Close it (``with``): Hypercorn's graceful shutdown
    waits for idle keep-alive connections."""
    options.setdefault("max_retries", 0)
    base_url = server if isinstance(server, str) else server.base_url + "/v1"
    return openai.OpenAI(base_url=base_url, api_key=api_key,
                         _strict_response_validation=True, **options)
