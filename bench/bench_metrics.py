"""GET /metrics of a manager with 10,000 nodes (issue 14: the scrape stays cheap as the fleet grows).

Runs a real `manager` (gunicorn, 2 workers, private Redis) with simulated nodes (bench/fleet_sim.py,
heartbeating every 5 s, each with its queue and reports stream), then scrapes /metrics in turn and prints
p50/p99 of the whole answer (the server's time and loopback HTTP) with its size and series count.

Usage: .venv/bin/python bench/bench_metrics.py [--nodes 10000] [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import simulated_fleet  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    with simulated_fleet(args.nodes, "simm") as (manager, session):
        samples = []
        body = ""
        for _ in range(args.runs):
            started = time.perf_counter()
            answer = session.get(manager.url + "/metrics", timeout=60)
            samples.append(time.perf_counter() - started)
            answer.raise_for_status()
            body = answer.text
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        print(
            f"/metrics at {args.nodes} nodes: p50 {ms(statistics.median(samples))}, p99 {ms(pct(samples, 0.99))} "
            f"({args.runs} GETs, {len(body) / 1024:.0f} KB, {series} series)"
        )


if __name__ == "__main__":
    main()
