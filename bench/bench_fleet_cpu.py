"""CPU per host of `echo hi` on a simulated fleet (issue 16): what the manager's processes, its Redis and the
simulator (bench/fleet_sim.py) burn per task, divided by the hosts, process by process.

Usage: .venv/bin/python bench/bench_fleet_cpu.py [--fleet 3000] [--tasks 10] [--warmup 2] [--rounds 1]

A fresh manager (2 workers) with --fleet simulated agents joined and heartbeating; --warmup tasks first, then
--tasks tasks one after the other, each until every result is stored. CPU is psutil's user+system of each
process over the tasks (heartbeats included, as on a real fleet), in µs per host and task. On a machine shared
with other work wall clock is noise but CPU time per task is not; --rounds repeats the measure on one fleet.
To compare with another checkout, run this script from that checkout's directory (its own bench/fleet_sim.py
and, with PYTHONPATH=., its own code: `python -m gunicorn` puts the cwd first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import run_task, simulated_fleet, tree_pids  # noqa: E402
from common import machine  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Manager  # noqa: E402


def role(proc: psutil.Process) -> str:
    """A short name of a manager or simulator process, from its command line."""
    line = " ".join(proc.cmdline())
    if "redis-server" in line:
        return "redis"
    if "fleet_sim" in line:
        return "simulator"
    if "gunicorn" in line or "manager_api.wsgi" in line:
        return "api"
    return proc.name()


def cpu_by_role(pids: list[int]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            name = role(proc)
        except psutil.Error:
            continue
        totals[name] = totals.get(name, 0.0) + times.user + times.system
    return totals


def measure(session: requests.Session, manager: Manager, nodes: int, tasks: int) -> dict[str, float]:
    """µs of CPU per host and task, by role, over ``tasks`` tasks."""
    pids = tree_pids(psutil.Process().pid)[1:]  # the manager's processes, its Redis, the simulator's
    before = cpu_by_role(pids)
    for _ in range(tasks):
        _, task = run_task(session, manager, ["sim=yes"], wait=300)
        if len(task["hosts"]) != nodes:
            raise RuntimeError(f"{len(task['hosts'])} hosts answered, {nodes} expected")
    after = cpu_by_role(pids)
    return {name: (after[name] - before.get(name, 0.0)) / tasks / nodes * 1e6 for name in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleet", type=int, default=3000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(machine())
    with simulated_fleet(args.fleet, f"cpu{args.fleet}") as (manager, session):
        for _ in range(args.warmup):
            run_task(session, manager, ["sim=yes"], wait=300)
        for _ in range(args.rounds):
            figures = measure(session, manager, args.fleet, args.tasks)
            parts = ", ".join(f"{name} {us:.0f}" for name, us in sorted(figures.items()))
            print(
                f"echo hi on {args.fleet:,} simulated agents, CPU per host and task (µs, mean of {args.tasks}): "
                f"total {sum(figures.values()):.0f} ({parts})",
                flush=True,
            )


if __name__ == "__main__":
    main()
