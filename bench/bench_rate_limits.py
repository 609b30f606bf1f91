"""Rate limits: what the limiter costs a request, and what it buys a well-behaved client while another floods.

1. Overhead: p50/p99 of a cheap counted GET (/api/templates, one keep-alive client) on a manager with
   --rate-limit off, then with a limit it never reaches (every request counted in Redis, none refused).
2. Flood: a well-behaved token GETs /api/templates 20 times a second while flooding processes hammer it with
   another token; its p99 and the flood's answers, with --rate-limit off and with --flood-limit.

Runs real `manager`s (gunicorn, 2 workers, private Redis) on this machine.
Usage: .venv/bin/python bench/bench_rate_limits.py [--requests 2000] [--seconds 10] [--flooders 2]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from shared.defaults import RATE_LIMIT  # noqa: E402
from tests.e2e.harness import Manager, isolated_env  # noqa: E402

PATH = "/api/templates"
GOOD = {"Authorization": "Bearer well-behaved"}
FLOOD = {"Authorization": "Bearer flooding"}


def latencies(url: str, count: int, headers: dict[str, str], pause: float = 0.0) -> tuple[list[float], list[int]]:
    """``count`` GETs on one keep-alive connection: their durations and status codes."""
    samples: list[float] = []
    codes: list[int] = []
    with requests.Session() as session:
        for _ in range(count):
            start = time.perf_counter()
            codes.append(session.get(url, headers=headers, timeout=10).status_code)
            samples.append(time.perf_counter() - start)
            if pause:
                time.sleep(pause)
    return samples, codes


def flood(url: str, seconds: float, queue: multiprocessing.Queue[dict[int, int]]) -> None:
    counts: collections.Counter[int] = collections.Counter()
    stop = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < stop:
            counts[session.get(url, headers=FLOOD, timeout=10).status_code] += 1
    queue.put(dict(counts))


def under_flood(url: str, seconds: float, flooders: int) -> str:
    queue: multiprocessing.Queue[dict[int, int]] = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=flood, args=(url, seconds, queue)) for _ in range(flooders)]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # the flood under way before the good client starts
    samples, codes = latencies(url, int((seconds - 1) * 20), GOOD, pause=0.05)
    totals: collections.Counter[int] = collections.Counter()
    for _ in procs:
        totals.update(queue.get())
    for proc in procs:
        proc.join()
    flood_line = ", ".join(f"{code}: {count / seconds:.0f}/s" for code, count in sorted(totals.items()))
    return (
        f"good client p50 {ms(pct(samples, 0.5))} p99 {ms(pct(samples, 0.99))} "
        f"({collections.Counter(codes)[200]}/{len(codes)} 200); flood {flood_line}"
    )


def run(limit: str, body: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        manager = Manager(workdir, isolated_env(workdir), ["--workers", "2", "--rate-limit", limit])
        manager.start()
        try:
            body(manager.url + PATH)
        finally:
            manager.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs of the overhead series")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each flood run")
    parser.add_argument("--flooders", type=int, default=3, help="flooding processes (one keep-alive client each)")
    # The default limit (500/second) is more than Python clients on 2 shared cores send: a lower one shows the
    # limiter at work. Run with --flood-limit 500/second on a machine with the cores to flood past it.
    parser.add_argument(
        "--flood-limit", default="100/second", help=f"limit of the flood run (default limit: {RATE_LIMIT})"
    )
    args = parser.parse_args()
    print(machine())
    for limit in ("off", "1000000/second"):

        def overhead(url: str, limit: str = limit) -> None:
            latencies(url, 200, GOOD)  # warm up
            samples, codes = latencies(url, args.requests, GOOD)
            assert set(codes) == {200}, collections.Counter(codes)
            figures = f"p50 {ms(pct(samples, 0.5))} p99 {ms(pct(samples, 0.99))}"
            print(f"overhead, --rate-limit {limit:15s}: GET {PATH} {figures}")

        run(limit, overhead)
    for limit in ("off", args.flood_limit):

        def flooded(url: str, limit: str = limit) -> None:
            figures = under_flood(url, args.seconds, args.flooders)
            print(f"flood ({args.flooders} clients), --rate-limit {limit:10s}: {figures}")

        run(limit, flooded)


if __name__ == "__main__":
    main()
