"""Engines: the protocol every engine implements, and its records.

Implement :class:`Engine` (``start``, ``submit`` → :class:`EngineStream` of
:class:`EngineDelta`, ``count_tokens``, ``statistics``, ``aclose``) to serve your own
engine with ``create_app(engine=...)``; the records are defined in ``engine/base.py`` and
re-exported here. The engines this package ships live in submodules: ``scripted`` (no
model) and ``vllm`` (the vLLM bridge). Importing this package imports neither, nor vLLM.
"""

from __future__ import annotations

from .base import (
    DeltaListener,
    Engine,
    EngineDelta,
    EngineRequest,
    EngineStatistics,
    EngineStream,
    FinishReason,
    Grammar,
    ListenedStream,
    SamplingOptions,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
)

__all__ = [
    "DeltaListener",
    "Engine",
    "EngineDelta",
    "EngineRequest",
    "EngineStatistics",
    "EngineStream",
    "FinishReason",
    "Grammar",
    "ListenedStream",
    "SamplingOptions",
    "TokenLogprob",
    "ToolCallDelta",
    "TopLogprob",
]
