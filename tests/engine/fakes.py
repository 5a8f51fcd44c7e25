"""A fake of vLLM's engine for testing the bridge's threading without vLLM.

:class:`FakeCore` behaves like ``LLMEngine`` as the bridge uses it: requests produce one
token (``"t<i> "``, or the next of ``script``) per ``step()``, end with ``length`` at
their ``max_tokens`` (the "params" the fake ``make_params`` builds) or ``stop`` at the
end of the script, and an aborted request produces nothing more.
It can fail a step, refuse a request, or block a step, to test the failure paths.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trio_responses.engine.base import SamplingOptions
from trio_responses.engine.reasoning import ReasoningParsers
from trio_responses.engine.tool_parsing import ToolCallParsers
from trio_responses.engine.vllm.bridge import VLLMEngine
from trio_responses.engine.vllm.prompt import PromptRenderer
from trio_responses.engine.vllm.worker import LoadedEngine


class FakeTokenizer:
    chat_template = "fake"

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        return " ".join(f"<{m['role']}> {m['content']}" for m in conversation) + " <assistant>"

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        return [len(word) for word in text.split()]


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int]
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: Any = None


@dataclass
class FakeOutput:
    request_id: str
    outputs: list[FakeCompletion]
    finished: bool
    num_cached_tokens: int = 0


@dataclass
class _Request:
    max_tokens: int
    produced: int = 0


@dataclass
class FakeCore:
    step_delay: float = 0.001
    fail_at_step: int | None = None
    # Die only once this many requests were added (a test that submits several before
    # the death must not race a loaded machine's engine thread to it).
    fail_once_added: int = 0
    refuse_prompt_tokens: int | None = None
    steps: int = 0
    added: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    shutdowns: int = 0
    hang: threading.Event | None = None
    # Output as (text, token ids) per step instead of "t<i> ", ending with "stop".
    script: list[tuple[str, list[int]]] | None = None
    _live: dict[str, _Request] = field(default_factory=dict)

    def add_request(self, request_id: str, prompt: Any, params: Any, priority: int) -> None:
        if len(prompt["prompt_token_ids"]) == self.refuse_prompt_tokens:
            raise ValueError("refused")
        self.added.append(request_id)
        self._live[request_id] = _Request(max_tokens=params)

    def abort_request(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            if self._live.pop(request_id, None) is not None:
                self.aborted.append(request_id)

    def step(self) -> list[Any]:
        self.steps += 1
        if self.hang is not None:
            self.hang.wait()
        if (self.fail_at_step is not None and self.steps >= self.fail_at_step
                and len(self.added) >= self.fail_once_added):
            raise RuntimeError("the fake engine died")
        time.sleep(self.step_delay)
        outputs = []
        for request_id, request in list(self._live.items()):
            token, ids = f"t{request.produced} ", [request.produced + 1]
            if self.script is not None:
                token, ids = self.script[request.produced]
            request.produced += 1
            finished = request.produced >= request.max_tokens
            reason = "length"
            if self.script is not None and request.produced == len(self.script):
                finished, reason = True, "stop"
            if finished:
                del self._live[request_id]
            completion = FakeCompletion(token, ids, finish_reason=reason if finished else None)
            outputs.append(FakeOutput(request_id, [completion], finished))
        return outputs

    def has_unfinished_requests(self) -> bool:
        return bool(self._live)

    def get_num_unfinished_requests(self) -> int:
        return len(self._live)

    def shutdown(self) -> None:
        self.shutdowns += 1
        if self.hang is not None:
            self.hang.set()


def core_writing(tokenizer: Any, text: str, *, per_step: int = 1) -> FakeCore:
    """A core whose every request writes ``text`` as ``tokenizer`` splits it (for vLLM's
    parsers, which read token ids), ``per_step`` tokens per step (as with speculative
    decoding)."""
    from trio_responses.engine.scripted import model_tokens

    pieces, ids = model_tokens(tokenizer, text)
    return FakeCore(script=[
        ("".join(pieces[at:at + per_step]), [i for token in ids[at:at + per_step] for i in token])
        for at in range(0, len(pieces), per_step)])


def fake_engine(core: FakeCore, *, max_model_len: int = 1000,
                reasoning: ReasoningParsers | None = None,
                tool_calls: ToolCallParsers | None = None,
                abort_soon: Callable[[str], None] | None = None, **kwargs: Any) -> VLLMEngine:
    def factory() -> LoadedEngine:
        renderer = PromptRenderer(FakeTokenizer(), max_model_len=max_model_len)

        def make_params(sampling: SamplingOptions, max_tokens: int, parse_tools: bool) -> int:
            return max_tokens

        return LoadedEngine(core, renderer, make_params, reasoning, tool_calls,
                            abort_soon=abort_soon)

    return VLLMEngine(factory, model_name="fake", **kwargs)
