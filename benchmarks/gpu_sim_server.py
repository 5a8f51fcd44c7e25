"""The server of benchmarks/gpu_rate.py: trio_responses with the real vLLM bridge over a
core that steps like a GPU.

    python benchmarks/gpu_sim_server.py PORT STEPS_PER_SECOND [COUNTER_FILE]

:class:`PacedCore` stands in for vLLM's ``LLMEngine`` behind the bridge's engine thread:
every ``1 / rate`` seconds one ``step()`` gives every running request one token, whose
text is the ``time.monotonic()`` of the step's hand-over (the clock is system-wide, so
the client knows how late each token reached it). Run by path, with no imports from
``benchmarks``, so that ``PYTHONPATH`` can pick the checkout of trio_responses served.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import trio

HOST = "127.0.0.1"
MODEL = "gpu-sim"


class WordTokenizer:
    """Enough of a tokenizer for the bridge's prompt renderer: one id per word."""

    chat_template = "words"

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        return " ".join(str(m.get("content")) for m in conversation)

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        return [len(word) for word in text.split()]


@dataclass
class _Live:
    max_tokens: int
    produced: int = 0


@dataclass
class PacedCore:
    """``LLMEngine`` as the bridge's worker uses it, stepping at ``rate`` steps/s."""

    rate: float
    # Where the count of tokens produced so far is kept (the benchmark's "offered").
    counter: str | None = None
    produced: int = 0
    _live: dict[str, _Live] = field(default_factory=dict)
    _next: float = 0.0

    def add_request(self, request_id: str, prompt: Any, params: Any, priority: int) -> None:
        self._live[request_id] = _Live(max_tokens=int(params))

    def abort_request(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self._live.pop(request_id, None)

    def step(self) -> list[Any]:
        now = time.monotonic()
        self._next = max(self._next + 1 / self.rate, now)
        time.sleep(self._next - now)
        token = f" {time.monotonic():.6f}"
        outputs = []
        for request_id, request in list(self._live.items()):
            request.produced += 1
            finished = request.produced >= request.max_tokens
            if finished:
                del self._live[request_id]
            completion = SimpleNamespace(text=token, token_ids=[request.produced],
                                         logprobs=None, stop_reason=None,
                                         finish_reason="length" if finished else None)
            outputs.append(SimpleNamespace(request_id=request_id, outputs=[completion],
                                           finished=finished, num_cached_tokens=0))
        self.produced += len(outputs)
        if self.counter is not None:  # replaced whole, so a reader never sees it half written
            with open(self.counter + ".new", "w") as out:
                out.write(str(self.produced))
            os.replace(self.counter + ".new", self.counter)
        return outputs

    def has_unfinished_requests(self) -> bool:
        return bool(self._live)

    def get_num_unfinished_requests(self) -> int:
        return len(self._live)

    def shutdown(self) -> None:
        pass


def serve(port: int, rate: float, counter: str | None = None) -> None:
    from trio_responses import Settings
    from trio_responses.engine.base import SamplingOptions
    from trio_responses.engine.vllm.bridge import VLLMEngine
    from trio_responses.engine.vllm.prompt import PromptRenderer
    from trio_responses.engine.vllm.worker import LoadedEngine
    from trio_responses.server import serve as serve_settings

    def factory() -> LoadedEngine:
        def make_params(sampling: SamplingOptions, max_tokens: int, parse_tools: bool) -> int:
            return max_tokens

        renderer = PromptRenderer(WordTokenizer(), max_model_len=1 << 20)
        return LoadedEngine(PacedCore(rate, counter), renderer, make_params)

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_args([
            "--model", MODEL, "--host", HOST, "--port", str(port), "--log-level", "warning",
            "--store-path", f"{tmp}/store.sqlite3",
            "--max-responses-per-key", "0", "--max-streams-per-key", "0"])
        trio.run(lambda: serve_settings(settings, engine=VLLMEngine(factory, model_name=MODEL)))


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
