"""Write storm (issue 10, item 4): N writer threads creating templates and fleet tasks against `--workers 4`.

Runs a real `manager` (gunicorn with 4 workers, private Redis) and one real `agent` on this machine, then
N threads (default 50) for D seconds (default 30), each with its own keep-alive HTTP client, alternating
POST /api/task/task_group (a new template) and POST /api/tasks (targets ["*"], started at once, so the
agent runs it and its reports reach the database through the duties while the storm goes on).
Prints requests/s, p50/p99 latency (overall and per call), every non-2xx status with its error, and how
many "database is locked" the manager logged. --nodes N also joins N simulated nodes (bench_core.register_nodes),
so that every task writes N + 1 host rows, as on a fleet.
Usage: .venv/bin/python bench/bench_writes.py [--writers 50] [--seconds 30] [--workers 4] [--nodes 0] [--keep-log F]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_core import register_nodes  # noqa: E402  (bench/bench_core.py)
from bench_tasks import online_count  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.storm import Tally, storm  # noqa: E402
from tests.support import wait_until  # noqa: E402

LOCKED = "database is locked"


def report(tallies: list[Tally], wall: float, manager_log: str) -> None:
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    failures: collections.Counter[tuple[str, int, str]] = collections.Counter()
    for tally in tallies:
        for kind, samples in tally.latencies.items():
            by_kind[kind].extend(samples)
        failures.update(tally.failures)
    every = [s for samples in by_kind.values() for s in samples]
    ok = sum(len(t.templates) + len(t.tasks) for t in tallies)
    print(
        f"{len(every)} answers in {wall:.1f} s: {len(every) / wall:.0f} requests/s ({ok / wall:.0f} 2xx/s), "
        f"p50 {ms(pct(every, 0.5))}, p99 {ms(pct(every, 0.99))}, max {ms(max(every))}"
    )
    for kind in sorted(by_kind):
        samples = by_kind[kind]
        print(f"  {kind}: {len(samples)} answers, p50 {ms(pct(samples, 0.5))}, p99 {ms(pct(samples, 0.99))}")
    print(f"2xx: {ok}; non-2xx or no answer: {sum(failures.values())}")
    for (kind, status, error), count in sorted(failures.items()):
        print(f"  {count:5d} x {kind} {status or 'no answer'}: {error}")
    print(f'"{LOCKED}" in the manager log: {manager_log.count(LOCKED)}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--nodes", type=int, default=0, help="simulated online nodes besides the agent (each task targets them all)"
    )
    parser.add_argument("--keep-log", type=Path, help="copy the manager's log there (its tracebacks) at the end")
    args = parser.parse_args()
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    print(
        f"{args.workers} workers x {args.writers} writers for {args.seconds:.0f} s, "
        f"tasks on {args.nodes + 1} node(s) (1 real agent, {args.nodes} simulated)"
    )
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        manager = Manager(workdir, env, ["--workers", str(args.workers)])
        manager.start()
        agent = Agent(workdir, env, manager, "bench-agent", 1.0)
        agent.start()
        try:
            session = requests.Session()
            wait_until(lambda: online_count(session, manager, "bench-agent") == 1, timeout=30, what="agent online")
            if args.nodes:
                # Joined through the real endpoint, one heartbeat each (interval 60 s: online for the whole run).
                register_nodes(manager, env, args.nodes).close()
            tallies, wall = storm(manager.url, args.writers, args.seconds)
            report(tallies, wall, manager.output())
        finally:
            agent.terminate()
            manager.terminate()
            if args.keep_log:
                shutil.copyfile(manager.log, args.keep_log)


if __name__ == "__main__":
    main()
