"""The web console's pages at 1,000 nodes (issue 13: every page well under a second; the node page
p99 <= 150 ms, paginated beyond 100 nodes).

Runs a real `manager` (gunicorn, 2 workers, private Redis, no API token: the console opens at once, as on
loopback) with 1,000 simulated nodes (bench/fleet_sim.py, heartbeating every 5 s), then GETs each page
in turn and prints p50/p99 of the whole answer as the browser's request sees it (the server's time and
loopback HTTP).

Usage: .venv/bin/python bench/bench_console.py [--nodes 1000] [--runs 200]
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

from bench_tasks import simulated_fleet  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)


def timed(session: requests.Session, url: str, runs: int) -> tuple[list[float], int]:
    samples = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        answer = session.get(url, timeout=30)
        samples.append(time.perf_counter() - started)
        answer.raise_for_status()
        size = len(answer.content)
    return samples, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    with simulated_fleet(args.nodes, "simc") as (manager, session):
        some = session.get(manager.url + "/api/nodes?q=hostname:simc-00042").json()["nodes"][0]["id"]
        pages = {
            "overview /": "/",
            f"nodes /nodes (first 100 of {args.nodes})": "/nodes",
            "nodes, a query /nodes?q=tags:web AND os.cpus:>4": "/nodes?q=tags:web%20AND%20os.cpus:%3E4",
            "nodes, page 5 /nodes?page=5": "/nodes?page=5",
            "a node /nodes/<id>": f"/nodes/{some}",
            "audit log /audit": "/audit",
            "apps /apps": "/apps",
            "fleet tasks /tasks (the run form's node picker shows 20)": "/tasks",
            "the node picker's search /tasks/node-picker?find=simc-001*": "/tasks/node-picker?find=simc-001*",
            "businesses /businesses": "/businesses",
            "schedules /schedules": "/schedules",
            "the manual /manual": "/manual",
        }
        session.get(manager.url + "/")  # the session cookie, once
        for label, path in pages.items():
            samples, size = timed(session, manager.url + path, args.runs)
            print(
                f"{label}: p50 {ms(statistics.median(samples))}, p99 {ms(pct(samples, 0.99))} "
                f"({args.runs} GETs, {size / 1024:.0f} KB of HTML)"
            )


if __name__ == "__main__":
    main()
