"""Fixtures for the engine tests: ``real_engine``, the session's one real vLLM engine.

Defined in :mod:`tests.engine.harness` (so another conftest can import the same fixture);
tests that use it are marked ``engine``.
"""

from tests.engine.harness import real_engine

__all__ = ["real_engine"]
