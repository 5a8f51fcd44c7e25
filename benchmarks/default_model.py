"""The default model as ``scripts/serve`` runs it: start-up time and sampling defaults.

    .venv/bin/python benchmarks/default_model.py starts     # ~15 min: first and second
                                                            # start of each mode, tokens/s
    .venv/bin/python benchmarks/default_model.py speed      # ~10 min: tokens/s, modes
                                                            # alternating
    .venv/bin/python benchmarks/default_model.py lengths    # ~10 min: output lengths

``starts``: for each start-up mode — vLLM's compiled default with its AOT compile cache
(``VLLM_USE_AOT_COMPILE=1``, vLLM's default with torch ≥ 2.10), compiled without it
(``VLLM_USE_AOT_COMPILE=0``: torch.compile with vLLM's and Inductor's own caches) and
``--enforce-eager`` — the server is started twice on one fresh ``VLLM_CACHE_ROOT``
(a cold start, then a warm one), each timed from the process start to the first
completed response; then output tokens/s of the warm server at concurrency 1 and 8
(64 tokens, ``ignore_eos``). The server's log is searched for vLLM's "Compiling model
again due to a load failure".

``speed``: output tokens/s at concurrency 1 and 8 (64 tokens, ``ignore_eos``) of the
modes given (``--modes``), alternating for ``--rounds`` rounds, one fresh start each.

``lengths``: 20 short chat prompts, each sent twice to one eager server: once with
``temperature: 1, top_p: 1`` (what a request got before the folder carried the model
card's sampling), ``max_output_tokens`` capped at ``--cap`` (the server's default was
4096) to bound the time, and once with no sampling fields at all (the model folder's
``generation_config.json`` decides: temperature 0.2, top_p 0.9, at most 512 tokens).
The figures say how many replies hit the cap.

The default model folder is prepared as the server prepares it (``--cache-dir`` /
``TRIO_RESPONSES_CACHE_DIR``). A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from benchmarks.bench_vllm import Server, load

MODEL = "SmolLM2-135M-Instruct"
MODES = {
    "compiled-aot": (["--max-model-len", "2048"], {"VLLM_USE_AOT_COMPILE": "1"}),
    "compiled-no-aot": (["--max-model-len", "2048"], {"VLLM_USE_AOT_COMPILE": "0"}),
    "eager": (["--max-model-len", "2048", "--enforce-eager"], {}),
}
PROMPTS = [
    "hi", "Hello!", "What is the capital of France?", "Name three colours.",
    "What is 2 + 2?", "Say something nice.", "Who wrote Hamlet?", "What day comes after Monday?",
    "Tell me a joke.", "What is water made of?", "How many legs does a spider have?",
    "Give me a synonym for happy.", "What is the opposite of cold?",
    "Translate 'thank you' to French.", "What colour is the sky?", "Recommend a book.",
    "What is Python?", "How are you today?", "What is the largest planet?", "Good morning!",
]
RELOAD_FAILURE = "Compiling model again due to a load failure"


class TimedServer(Server):
    """A server whose ``start`` is timed to its first completed response."""

    def __init__(self, name: str, port: int, flags: list[str], env: dict[str, str]) -> None:
        store = Path(tempfile.mkdtemp(prefix="bench-store-")) / "responses.sqlite3"
        super().__init__(name, [sys.executable, "-m", "trio_responses", "--port", str(port),
                                "--store-path", str(store), *flags], port, MODEL)
        self.env = env
        self.log = Path(f"/tmp/bench_{name}.log")

    def timed_start(self) -> float:
        """Seconds from the process start to its first completed response."""
        import subprocess

        started = time.monotonic()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env},
                                            start_new_session=True)
        body = {"model": MODEL, "input": "hi", "max_output_tokens": 8, "store": False}
        while time.monotonic() - started < 1800:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                if httpx.post(self.base_url + "/v1/responses", json=body,
                              timeout=120).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.process = None  # it already exited (its log says why)
        super().stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def starts(modes: list[str]) -> None:
    for mode in modes:
        flags, env = MODES[mode]
        cache = tempfile.mkdtemp(prefix=f"vllm-cache-{mode}-")
        times = []
        for attempt in ("first", "second"):
            server = TimedServer(f"{mode}-{attempt}", free_port(), flags,
                                 {**env, "VLLM_CACHE_ROOT": cache})
            try:
                seconds = server.timed_start()
                times.append(seconds)
                reloaded = RELOAD_FAILURE in server.log.read_text(errors="replace")
                trio.run(load, server.base_url, MODEL, 2, 4, 16)  # warm-up
                print(f"{mode:16} {attempt:6} start → first answer {seconds:6.1f} s"
                      f"{'  (AOT cache failed to load: compiled again)' if reloaded else ''}",
                      flush=True)
                if attempt == "second":
                    for concurrency in (1, 8):
                        result = trio.run(load, server.base_url, MODEL, concurrency,
                                          concurrency * 2, 64)
                        print(f"{mode:16} c={concurrency}: {result.tokens_per_second:6.1f} "
                              "output tokens/s", flush=True)
            finally:
                server.stop()


async def lengths_of(base_url: str, cap: int, explicit: bool) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = [(0, 0.0)] * len(PROMPTS)
    async with httpx.AsyncClient(base_url=base_url, timeout=3600) as client:
        async def one(index: int) -> None:
            body: dict[str, object] = {"model": MODEL, "input": PROMPTS[index], "store": False}
            if explicit:
                body.update(temperature=1.0, top_p=1.0, max_output_tokens=cap)
            started = time.monotonic()
            response = await client.post("/v1/responses", json=body)
            response.raise_for_status()
            tokens = int(response.json()["usage"]["output_tokens"])
            results[index] = (tokens, time.monotonic() - started)

        async with trio.open_nursery() as nursery:
            for index in range(len(PROMPTS)):
                nursery.start_soon(one, index)
    return results


def speed(modes: list[str], rounds: int) -> None:
    """Output tokens/s of each mode, the modes alternating for ``rounds`` rounds, so that
    the machine's noise hits them alike (each start is warmed up first)."""
    totals: dict[tuple[str, int], list[float]] = {}
    for round_number in range(1, rounds + 1):
        for mode in modes:
            flags, env = MODES[mode]
            server = TimedServer(f"{mode}-speed", free_port(), flags, env)
            try:
                seconds = server.timed_start()
                trio.run(load, server.base_url, MODEL, 2, 4, 16)  # warm-up
                for concurrency in (1, 8):
                    result = trio.run(load, server.base_url, MODEL, concurrency,
                                      concurrency * 3, 64)
                    totals.setdefault((mode, concurrency), []).append(
                        result.tokens_per_second)
                    print(f"round {round_number} {mode:16} (started in {seconds:5.1f} s) "
                          f"c={concurrency}: {result.tokens_per_second:6.1f} output tokens/s",
                          flush=True)
            finally:
                server.stop()
    for (mode, concurrency), values in totals.items():
        print(f"{mode:16} c={concurrency}: mean {statistics.mean(values):6.1f} output tokens/s "
              f"over {len(values)} rounds", flush=True)


def lengths(cap: int) -> None:
    flags, env = MODES["eager"]
    server = TimedServer("lengths", free_port(), flags, env)
    server.timed_start()
    try:
        for label, explicit in (("temperature 1, top_p 1 (before)", True),
                                ("model defaults (after)", False)):
            results = trio.run(lengths_of, server.base_url, cap, explicit)
            tokens = [t for t, _ in results]
            seconds = [s for _, s in results]
            print(f"{label}: output tokens per reply: median {statistics.median(tokens):.0f}, "
                  f"mean {statistics.mean(tokens):.0f}, max {max(tokens)}, "
                  f"{sum(t >= (cap if explicit else 512) for t in tokens)}/{len(tokens)} at "
                  f"the cap of {cap if explicit else 512}; "
                  f"seconds per reply (20 at once): median {statistics.median(seconds):.1f}, "
                  f"max {max(seconds):.1f}", flush=True)
            print(f"  tokens: {tokens}", flush=True)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["starts", "speed", "lengths"])
    parser.add_argument("--rounds", type=int, default=2, help="alternations in 'speed'")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--cap", type=int, default=1024,
                        help="max_output_tokens of the 'before' replies in 'lengths'")
    args = parser.parse_args()
    if args.part == "starts":
        starts(args.modes)
    elif args.part == "speed":
        speed(args.modes, args.rounds)
    else:
        lengths(args.cap)


if __name__ == "__main__":
    main()
