"""trio_responses vs vLLM's own OpenAI server, same model and engine settings, one run.

    .venv/bin/python benchmarks/bench_vllm.py [--concurrency 1 8 32] [--tokens 64]

Both servers are started here, one at a time on 127.0.0.1, with the same engine flags
(default model, float32, eager, same max-model-len, OMP_NUM_THREADS = cores). For each
concurrency level the two servers are measured alternately (ours, theirs, ours,
theirs…: ``--rounds``), each round streaming ``/v1/responses`` with a fixed output length
(``ignore_eos`` and ``max_output_tokens``), so machine noise hits both alike. Per server
and level it prints output tokens/s, time to first token p50/p99 and inter-token gap
p50/p99, and our/vLLM ratios; then the engine's own ceiling: offline ``LLM.generate``
with the same threads, prompt, length and batch. A benchmark, not a test: nothing here
asserts.

Because both servers need the CPU to themselves, each is started for its rounds and
stopped before the other starts; every start is warmed up before it is measured.
``--before CHECKOUT`` adds a third server, that checkout's trio_responses (e.g. main
before a change, from ``git archive``), in the same rotation, with its own ratios to
vLLM: before and after a change, side by side under the same noise.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Write a long story about a lighthouse keeper and the sea."
MODEL = "SmolLM2-135M-Instruct"


@dataclass
class Sample:
    ttft: float
    gaps: list[float]
    tokens: int
    # Each text delta's arrival (time.perf_counter: CLOCK_MONOTONIC, as --trace's).
    stamps: list[float] = field(default_factory=list)


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0

    def add(self, other: Result) -> None:
        self.samples += other.samples
        self.wall += other.wall

    @property
    def tokens_per_second(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall if self.wall else 0.0

    def ttft(self, q: float) -> float:
        return quantile([s.ttft for s in self.samples], q)

    def gap(self, q: float) -> float:
        return quantile([g for s in self.samples for g in s.gaps], q)


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_request(client: httpx.AsyncClient, model: str, tokens: int) -> Sample:
    body = {"model": model, "input": PROMPT, "stream": True, "max_output_tokens": tokens,
            "temperature": 0, "ignore_eos": True, "store": False}
    start = time.perf_counter()
    stamps: list[float] = []
    count = 0
    async with client.stream("POST", "/v1/responses", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"response.output_text.delta"' in line:
                stamps.append(time.perf_counter())
            elif line.startswith("data: {") and '"response.completed"' in line:
                usage = json.loads(line[6:])["response"].get("usage") or {}
                count = int(usage.get("output_tokens", 0))
    if not stamps:
        raise RuntimeError("no text deltas received")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return Sample(stamps[0] - start, gaps, count or len(stamps), stamps)


async def load(base_url: str, model: str, concurrency: int, requests: int,
               tokens: int) -> Result:
    result = Result()
    # A pooled connection is dropped after 2 s idle, before either server's idle timer
    # can close it (uvicorn's 5 s under vLLM): at httpx's default 5 s a request could be
    # sent on a connection the server was closing (RemoteProtocolError, "Server
    # disconnected without sending a response").
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency,
                          keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
        todo = iter(range(requests))

        async def worker() -> None:
            for _ in todo:
                result.samples.append(await one_request(client, model, tokens))

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        result.wall = time.perf_counter() - start
    return result


class Server:
    def __init__(self, name: str, argv: list[str], port: int, model: str,
                 cwd: Path = ROOT) -> None:
        self.name, self.argv, self.port, self.model = name, argv, port, model
        # ``python -m trio_responses`` serves the checkout it is started in.
        self.cwd = cwd
        # The server's environment (None: this process's).
        self.env: dict[str, str] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 600) -> None:
        log = open(f"/tmp/bench_{self.name}.log", "wb")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.cwd, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see /tmp/bench_{self.name}.log")
            try:
                if httpx.get(self.base_url + "/v1/models", timeout=2).status_code == 200:
                    trio.run(load, self.base_url, self.model, 2, 4, 16)  # warm-up
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def engine_flags(model_dir: str, max_model_len: int) -> list[str]:
    return ["--dtype", "float32", "--enforce-eager", "--max-model-len", str(max_model_len),
            "--served-model-name", MODEL]


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the servers compared (shared with disconnect_real.py)."""
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also serve this checkout's trio_responses (as 'before'; e.g. "
                             "from `git archive`), alternating with the other two")
    parser.add_argument("--trace", type=Path, metavar="DIR",
                        help="record each engine-core output's timestamps in every server "
                             "(benchmarks/core_trace) into DIR/<server>/")


def make_servers(args: argparse.Namespace, base_port: int, store: str) -> list[Server]:
    """Ours, vLLM's server (and with ``--before`` the other checkout), on consecutive
    ports from ``base_port``, with the default model folder and the same engine flags;
    sets the CPU environment both servers inherit."""
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from trio_responses.engine.default_model import ensure_default_model

    model_dir = str(ensure_default_model())
    flags = engine_flags(model_dir, args.max_model_len)

    def ours(name: str, port: int, cwd: Path) -> Server:
        return Server(name, [sys.executable, "-m", "trio_responses", "--model", model_dir,
                             "--port", str(port), "--store-path", f"{store}-{name}.sqlite3",
                             *flags], port, MODEL, cwd)

    servers = [ours("trio_responses", base_port, ROOT),
               Server("vllm", [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                               "--model", model_dir, "--port", str(base_port + 1),
                               "--host", "127.0.0.1", *flags], base_port + 1, MODEL)]
    if args.before is not None:
        servers.append(ours("before", base_port + 2, args.before.resolve()))
    if args.trace is not None:
        for server in servers:
            folder = args.trace.resolve() / server.name
            folder.mkdir(parents=True, exist_ok=True)
            path = [str(ROOT / "benchmarks" / "core_trace"), os.environ.get("PYTHONPATH", "")]
            server.env = {**os.environ, "BENCH_CORE_TRACE": str(folder),
                          "PYTHONPATH": os.pathsep.join(filter(None, path))}
    return servers


@dataclass
class Trace:
    """Where a server's text deltas spend their time, from ``--trace``'s records: the
    engine core's interval between outputs (``step``), from an output's creation in the
    core to the front end taking it from vLLM's client (``lag``), and from the creation
    of the newest output before a client's delta to that delta's arrival (``e2e``:
    engine core to client, through the whole front end)."""

    step: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)

    def add(self, folder: Path, start: float, end: float, samples: list[Sample]) -> None:
        rows = sorted((float(core), float(taken)) for path in folder.glob("*.txt")
                      for core, taken, _ in (line.split() for line in path.open())
                      if start <= float(taken) <= end)
        cores = [core for core, _ in rows]
        self.step += [b - a for a, b in itertools.pairwise(cores)]
        self.lag += [taken - core for core, taken in rows]
        for sample in samples:
            for stamp in sample.stamps:
                at = bisect.bisect_right(cores, stamp) - 1
                if at >= 0:
                    self.e2e.append(stamp - cores[at])


def offline_ceiling(model_dir: str, batch: int, tokens: int, max_model_len: int) -> float:
    """Output tokens/s of ``LLM.generate`` with the same prompt, length and batch."""
    code = f"""
import time
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    llm = LLM(model={model_dir!r}, dtype="float32", enforce_eager=True,
              max_model_len={max_model_len})
    tok = llm.get_tokenizer()
    prompt = tok.apply_chat_template([{{"role": "user", "content": {PROMPT!r}}}],
                                     tokenize=False, add_generation_prompt=True)
    params = SamplingParams(max_tokens={tokens}, ignore_eos=True, temperature=0)
    llm.generate([prompt] * 2, params, use_tqdm=False)
    start = time.perf_counter()
    outs = llm.generate([prompt] * {batch}, params, use_tqdm=False)
    wall = time.perf_counter() - start
    print("CEILING", sum(len(o.outputs[0].token_ids) for o in outs) / wall)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/tmp", timeout=900)
    for line in out.stdout.splitlines():
        if line.startswith("CEILING"):
            return float(line.split()[1])
    raise RuntimeError(out.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternations per level")
    parser.add_argument("--requests-per-round", type=int, default=0,
                        help="default: 2 x concurrency (at least 4)")
    add_server_arguments(parser)
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--json", type=Path,
                        help="append each server's figures per level here (benchmarks/plots.py)")
    args = parser.parse_args()

    servers = make_servers(args, 8301, "/tmp/bench_store")
    theirs = servers[1]
    results = {(s.name, c): Result() for s in servers for c in args.concurrency}
    traces = {(s.name, c): Trace() for s in servers for c in args.concurrency}
    for round_number in range(args.rounds):
        # Each round starts with the next server: each goes first as often as the others.
        shift = round_number % len(servers)
        for server in servers[shift:] + servers[:shift]:
            server.start()
            try:
                for level in args.concurrency:
                    count = args.requests_per_round or max(4, 2 * level)
                    start = time.perf_counter()
                    result = trio.run(load, server.base_url, server.model, level, count,
                                      args.tokens)
                    results[(server.name, level)].add(result)
                    if args.trace is not None:
                        traces[(server.name, level)].add(args.trace.resolve() / server.name,
                                                         start, time.perf_counter(),
                                                         result.samples)
                    print(f"round {round_number} {server.name} c={level}: "
                          f"{results[(server.name, level)].tokens_per_second:.1f} tok/s so far",
                          flush=True)
            finally:
                server.stop()

    print()
    print("| concurrency | server | tokens/s | TTFT p50 | TTFT p99 | gap p50 | gap p99 |")
    print("|---|---|---|---|---|---|---|")
    for level in args.concurrency:
        for server in servers:
            r = results[(server.name, level)]
            print(f"| {level} | {server.name} | {r.tokens_per_second:.1f} | {r.ttft(0.5):.3f} s"
                  f" | {r.ttft(0.99):.3f} s | {r.gap(0.5) * 1000:.1f} ms | "
                  f"{r.gap(0.99) * 1000:.1f} ms |")
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({"server": server.name, "concurrency": level,
                                          "tokens_per_second": r.tokens_per_second,
                                          "ttft_p50": r.ttft(0.5), "ttft_p99": r.ttft(0.99),
                                          "gap_p50": r.gap(0.5), "gap_p99": r.gap(0.99)})
                              + "\n")
        b = results[(theirs.name, level)]
        for server in servers:
            if server is theirs:
                continue
            a = results[(server.name, level)]
            label = "ours" if server is servers[0] else server.name
            print(f"| {level} | **{label}/vLLM** | "
                  f"**{a.tokens_per_second / b.tokens_per_second:.3f}** | "
                  f"{a.ttft(0.5) / b.ttft(0.5):.3f} | {a.ttft(0.99) / b.ttft(0.99):.3f} | "
                  f"{a.gap(0.5) / b.gap(0.5):.3f} | {a.gap(0.99) / b.gap(0.99):.3f} |")
    if args.trace is not None:
        print()
        print("| concurrency | server | core step p50 | p99 | core → front end p50 | p99 | "
              "core → client p50 | p99 |")
        print("|---|---|---|---|---|---|---|---|")
        for level in args.concurrency:
            for server in servers:
                t = traces[(server.name, level)]
                print(f"| {level} | {server.name} | "
                      + " | ".join(f"{quantile(values, q) * 1000:.1f} ms"
                                   for values in (t.step, t.lag, t.e2e) for q in (0.5, 0.99))
                      + " |")
    if not args.no_ceiling:
        from trio_responses.engine.default_model import ensure_default_model

        model_dir = str(ensure_default_model())
        print()
        for level in args.concurrency:
            ceiling = offline_ceiling(model_dir, level, args.tokens, args.max_model_len)
            figures = ", ".join(
                f"{s.name} {results[(s.name, level)].tokens_per_second / ceiling:.3f}"
                for s in servers)
            print(f"engine ceiling (LLM.generate, batch {level}): {ceiling:.1f} tok/s; "
                  f"of it: {figures}")
    print(f"\ncommand: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
