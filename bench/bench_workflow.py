"""Workflow figures (issue 17): a 100-step workflow (10 waves x 10 parallel `true` steps, each wave depending on
every step of the one before) on 3 real agents, call -> done; and the same 100 commands run one by one through
POST /api/tasks?wait, to read the workflow's overhead per step.

Usage: .venv/bin/python bench/bench_workflow.py [--runs 3] [--waves 10] [--width 10] [--fleet N]
Prints, per run, the call -> done time and the gap between waves (the last task of a wave ending -> the first of
the next starting, from the stored times); then p50 of the tasks run one by one. --fleet N runs the workflow
(`echo hi` steps) on N simulated agents (bench/fleet_sim.py) instead, call -> done only: what a wave costs the
manager when each step reaches a large fleet.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import simulated_fleet  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import wait_until  # noqa: E402

AGENTS = ("wfb-a", "wfb-b", "wfb-c")


def body(waves: int, width: int, command: str = "true") -> dict[str, Any]:
    steps = []
    for wave in range(waves):
        before = [f"w{wave - 1}_{i}" for i in range(width)] if wave else []
        for i in range(width):
            steps.append(
                {
                    "name": f"w{wave}_{i}",
                    "depends_on": before,
                    "task": {"command": command, "targets": ["*"], "timeout": 300},
                }
            )
    return {"name": "bench", "steps": steps}


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def wave_gaps(
    session: requests.Session, manager: Manager, workflow: dict[str, Any], waves: int
) -> tuple[list[float], list[float]]:
    """Per wave boundary: the last task of wave w ending -> the first step of wave w+1 starting (seconds); and per
    wave, its first task recorded -> its last (created_at: one transaction for a wave since create_many)."""
    ended: dict[int, datetime] = {}
    started: dict[int, datetime] = {}
    created: dict[int, list[datetime]] = {}
    for step in workflow["steps"]:
        wave = int(step["name"][1:].split("_")[0])
        task = session.get(f"{manager.url}/api/tasks/{step['task_id']}").json()
        last = max(parse(h["finished_at"]) for h in task["hosts"])
        ended[wave] = max(ended.get(wave, last), last)
        first = parse(step["started_at"])
        started[wave] = min(started.get(wave, first), first)
        created.setdefault(wave, []).append(parse(task["created_at"]))
    gaps = [(started[w + 1] - ended[w]).total_seconds() for w in range(waves - 1)]
    return gaps, [(max(stamps) - min(stamps)).total_seconds() for stamps in created.values()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--waves", type=int, default=10)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--fleet", type=int, help="run on this many simulated agents (call -> done only)")
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.fleet:
        on_fleet(args.fleet, args.runs, args.waves, args.width)
        return
    with tempfile.TemporaryDirectory(prefix="corral-bench-wf-") as scratch:
        tmp = Path(scratch)
        env = isolated_env(tmp)
        manager = Manager(tmp, env)
        manager.start()
        agents = [Agent(tmp, env, manager, hostname, 1.0) for hostname in AGENTS]
        try:
            for agent in agents:
                agent.start()
            wait_until(
                lambda: sum(n["status"] == 0 for n in manager.get("/api/task/node").json()["nodes"]) == len(AGENTS),
                timeout=60,
                what="agents online",
            )
            session = requests.Session()
            steps = args.waves * args.width
            for run in range(args.runs):
                t0 = time.perf_counter()
                answer = session.post(f"{manager.url}/api/workflows?wait=300", json=body(args.waves, args.width))
                elapsed = time.perf_counter() - t0
                workflow = answer.json()
                if workflow.get("status") != "completed":
                    raise RuntimeError(f"workflow ended {workflow.get('status')}: {answer.text[:500]}")
                gaps, spreads = wave_gaps(session, manager, workflow, args.waves)
                print(
                    f"workflow run {run + 1}: {steps} steps ({args.waves} waves x {args.width}) on {len(AGENTS)} "
                    f"agents, call -> done {elapsed:.2f} s ({ms(elapsed / steps)} per step, "
                    f"{ms(elapsed / args.waves)} per wave); gap between waves p50 {ms(pct(gaps, 0.5))}, "
                    f"max {ms(max(gaps))}; a wave's tasks recorded within p50 {ms(pct(spreads, 0.5))}",
                    flush=True,
                )
            one_by_one = []
            t0 = time.perf_counter()
            for _ in range(steps):
                t1 = time.perf_counter()
                answer = session.post(
                    f"{manager.url}/api/tasks?wait=60",
                    json={"name": "bench", "command": "true", "targets": ["*"], "timeout": 60},
                )
                one_by_one.append(time.perf_counter() - t1)
                if answer.json().get("status") != "completed":
                    raise RuntimeError(answer.text[:500])
            total = time.perf_counter() - t0
            print(
                f"one by one: {steps} x POST /api/tasks?wait (`true` on {len(AGENTS)} agents): {total:.2f} s, "
                f"p50 {ms(pct(one_by_one, 0.5))}, p90 {ms(pct(one_by_one, 0.9))}, max {ms(max(one_by_one))}",
                flush=True,
            )
        finally:
            for agent in agents:
                if agent.alive():
                    agent.terminate()
            manager.terminate()


def on_fleet(nodes: int, runs: int, waves: int, width: int) -> None:
    """The workflow of ``waves`` x ``width`` `echo hi` steps, each on every one of ``nodes`` simulated agents."""
    with simulated_fleet(nodes, "wfs") as (manager, session):
        for run in range(runs):
            t0 = time.perf_counter()
            answer = session.post(f"{manager.url}/api/workflows?wait=300", json=body(waves, width, "echo hi"))
            elapsed = time.perf_counter() - t0
            workflow = answer.json()
            if workflow.get("status") != "completed":
                raise RuntimeError(f"workflow ended {workflow.get('status')}: {answer.text[:500]}")
            print(
                f"workflow run {run + 1}: {waves * width} steps ({waves} waves x {width}) on {nodes:,} simulated "
                f"agents ({waves * width * nodes:,} host runs), call -> done {elapsed:.2f} s "
                f"({ms(elapsed / waves)} per wave)",
                flush=True,
            )


if __name__ == "__main__":
    main()
