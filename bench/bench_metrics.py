"""GET /metrics of a manager with 10,000 nodes (issue 14: the scrape stays cheap as the fleet grows).

Runs a real `manager` (gunicorn, 2 workers, private Redis) with simulated nodes (bench/fleet_sim.py,
heartbeating every 5 s, each with its queue and reports stream), then scrapes /metrics in turn and prints
p50/p99 of the whole answer (the server's time and loopback HTTP) with its size and series count.
With --idle-seconds N it then measures the manager's idle CPU (issue 14: under 20 % of one core) over N
seconds with no scrape, then N seconds scraped every 15 s as Prometheus does: the manager's own processes
(launcher with the duties, gunicorn's master and workers) and its redis-server apart.

Usage: .venv/bin/python bench/bench_metrics.py [--nodes 10000] [--runs 50] [--idle-seconds 120]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import cpu_seconds, simulated_fleet, tree_pids  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Manager  # noqa: E402

SCRAPE_INTERVAL = 15.0
"""Prometheus's default scrape interval, and ops/prometheus.yml's."""


def idle_cpu(manager: Manager, session: requests.Session, seconds: float, scrape: bool) -> tuple[float, float]:
    """Percent of one core used by the manager's processes and by its Redis over ``seconds``, GETting /metrics
    every SCRAPE_INTERVAL when ``scrape``."""
    pids = tree_pids(manager.pid)
    redis_pids = [p for p in pids if "redis-server" in " ".join(psutil.Process(p).cmdline())]
    own = [p for p in pids if p not in redis_pids]
    m0, r0, started = cpu_seconds(own), cpu_seconds(redis_pids), time.monotonic()
    end = started + seconds
    next_scrape = started if scrape else end
    while (now := time.monotonic()) < end:
        if now >= next_scrape:
            session.get(manager.url + "/metrics", timeout=60).raise_for_status()
            next_scrape += SCRAPE_INTERVAL
        time.sleep(max(0.0, min(next_scrape, end) - time.monotonic()))
    elapsed = time.monotonic() - started
    return (cpu_seconds(own) - m0) / elapsed * 100, (cpu_seconds(redis_pids) - r0) / elapsed * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=0, help="then measure idle CPU for this long, twice")
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
            f"({args.runs} GETs, {len(body) / 1024:.0f} KB, {series} series)",
            flush=True,
        )
        if args.idle_seconds:
            for scrape in (False, True):
                manager_cpu, redis_cpu = idle_cpu(manager, session, args.idle_seconds, scrape)
                what = f"scraped every {SCRAPE_INTERVAL:.0f} s" if scrape else "not scraped"
                print(
                    f"idle CPU at {args.nodes} nodes, {what}, over {args.idle_seconds:.0f} s: manager "
                    f"{manager_cpu:.1f} % of a core, its Redis {redis_cpu:.1f} % "
                    f"(load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
