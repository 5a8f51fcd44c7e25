"""Render the benchmarks' JSON-lines results to the PNGs the README shows.

    python benchmarks/plots.py [--results benchmarks/results] [--out benchmarks]

Reads, where present (each written by a benchmark's ``--json``):

* ``gpu_rate.jsonl`` (``gpu_rate.py``) → ``gpu_rate.png``: delivered against offered
  tokens/s, and server CPU per delivered token, per server (before/after);
* ``server_overhead.jsonl`` (``server_overhead.py``) → ``cpu_per_event.png``: server CPU
  per streamed token, per server and pacing (the mean over rounds, each round a dot);
* ``bench_vllm.jsonl`` (``bench_vllm.py``) → ``vs_vllm.png``: tokens/s and TTFT p50
  against concurrency, ours and vLLM's server.

A missing file means no plot, never a made-up one.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_server(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for point in points:
        grouped[point["server"]].append(point)
    return grouped


def gpu_rate(points: list[dict[str, Any]], out: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = max(max(p["offered"], p["delivered"]) for p in points)
    left.plot([0, top], [0, top], color="0.8", linestyle="--", label="delivered = offered")
    for server, group in by_server(points).items():
        group.sort(key=lambda p: p["offered"])
        left.plot([p["offered"] for p in group], [p["delivered"] for p in group], "o-",
                  label=server)
        right.plot([p["offered"] for p in group],
                   [p["cpu_us_per_token"] for p in group], "o-", label=server)
    left.set(xlabel="offered tokens/s (engine)", ylabel="delivered tokens/s (clients)",
             title="GPU-rate simulation: tokens")
    right.set(xlabel="offered tokens/s (engine)", ylabel="server CPU per delivered token (µs)",
              title="CPU per token (falls as lagging streams get merged deltas)")
    right.set_ylim(bottom=0)
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "gpu_rate.png", dpi=110)
    plt.close(fig)


def cpu_per_event(points: list[dict[str, Any]], out: Path) -> None:
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for point in points:
        groups[(point["server"], point["token_delay"])].append(point["cpu_us_per_token"])
    keys = sorted(groups, key=lambda k: (k[1], k[0]))
    fig, axis = plt.subplots(figsize=(7, 4))
    for index, key in enumerate(keys):
        values = groups[key]
        axis.bar(index, sum(values) / len(values), color="C0" if "after" in key[0] else "C1")
        axis.plot([index] * len(values), values, "k.", markersize=5)
    axis.set_xticks(range(len(keys)),
                    [f"{server}\n{'paced' if delay else 'zero delay'}" for server, delay in keys],
                    fontsize=8)
    axis.set(ylabel="server CPU per streamed token (µs)",
             title="CPU per event, scripted engine (mean; dots: rounds)")
    axis.axhline(50, color="0.5", linestyle="--", linewidth=1)
    axis.text(len(keys) - 0.5, 51, "goal 50 µs", ha="right", fontsize=8, color="0.4")
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "cpu_per_event.png", dpi=110)
    plt.close(fig)


def vs_vllm(points: list[dict[str, Any]], out: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for server, group in by_server(points).items():
        group.sort(key=lambda p: p["concurrency"])
        levels = [p["concurrency"] for p in group]
        left.plot(levels, [p["tokens_per_second"] for p in group], "o-", label=server)
        right.plot(levels, [p["ttft_p50"] for p in group], "o-", label=server)
    left.set(xlabel="concurrency", ylabel="output tokens/s", xscale="log",
             title="through the real engine")
    right.set(xlabel="concurrency", ylabel="TTFT p50 (s)", xscale="log", title="TTFT")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "vs_vllm.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    for name, render in (("gpu_rate", gpu_rate), ("server_overhead", cpu_per_event),
                         ("bench_vllm", vs_vllm)):
        points = rows(args.results / f"{name}.jsonl")
        if points:
            render(points, args.out)
            print(f"{name}: {len(points)} points rendered")
        else:
            print(f"{name}: no results in {args.results}, no plot")


if __name__ == "__main__":
    main()
