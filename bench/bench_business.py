"""Business figures (issue 4): deploy call -> 10 process components running on real agents, and the
node list's p99 with 1,000 nodes while component metrics stream in.

Runs a real `manager` (gunicorn, private Redis) and real `agent` processes on this machine; the 1,000
nodes are registered through the real join endpoint, heartbeated through shared/heartbeat.py, and their
component reports are appended through shared/report_streams.py exactly as agents do.
Placement alone (at 1,000 nodes) is measured by bench/bench_placement.py.
Usage: .venv/bin/python bench/bench_business.py [--agents 3] [--deploys 10] [--requests 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_core import JOB_KEYS, bench_node_list, register_nodes  # noqa: E402  (bench/bench_core.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from shared import report_streams  # noqa: E402
from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import wait_until  # noqa: E402

COMPONENTS = 10


def business_body(name: str) -> dict:
    return {
        "business_name": name,
        "components": [
            {
                "component_id": f"c{i}",
                "component_name": f"sleeper-{i}",
                "type": "process",
                "command": "sleep 600",
                "resource_requirements": {"cpu_cores": 0.1, "memory_mb": 16},
            }
            for i in range(COMPONENTS)
        ],
    }


def bench_deploy(manager: Manager, session: requests.Session, runs: int) -> list[float]:
    samples = []
    for run in range(runs):
        t0 = time.perf_counter()
        answer = session.post(manager.url + "/api/businesses", json=business_body(f"bench-{run}"))
        answer.raise_for_status()
        business_id = answer.json()["business_id"]
        while True:
            detail = session.get(f"{manager.url}/api/businesses/{business_id}").json()
            if detail["status"] == "running":
                break
            if detail["status"] == "failed" or time.perf_counter() - t0 > 30:
                raise RuntimeError(f"business {business_id} not running: {detail}")
            time.sleep(0.002)
        samples.append(time.perf_counter() - t0)
        session.post(f"{manager.url}/api/businesses/{business_id}/stop").raise_for_status()
        wait_until(
            lambda bid=business_id: session.get(f"{manager.url}/api/businesses/{bid}").json()["status"] == "stopped",
            timeout=30,
            what=f"business {business_id} stopped",
        )
    return samples


def stream_metrics(client: redis.Redis, placed: list[dict], per_second: float, stop: threading.Event) -> None:
    """Append a running report with usage for every placed component, ``per_second`` reports a second."""
    n = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        for c in placed:
            report_streams.publish_component_report(
                client,
                {
                    "business_id": c["business_id"],
                    "component_id": c["component_id"],
                    "node_id": c["node_id"],
                    "generation": c.get("generation", 1),
                    "status": "running",
                    "timestamp": time.time(),
                    "pid": 1000 + n % 1000,
                    "resource_usage": {"cpu_percent": n % 100, "memory_mb": 100 + n % 50},
                },
                key=JOB_KEYS[c["node_id"]],
            )
            n += 1
        stop.wait(max(0.0, len(placed) / per_second - (time.perf_counter() - t0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--reports-per-second", type=float, default=200.0)
    args = parser.parse_args()

    print(machine())
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        manager = Manager(workdir, env)
        manager.start()
        agents = [Agent(workdir, env, manager, f"bench-{i}", 1.0) for i in range(args.agents)]
        for agent in agents:
            agent.start()
        stop = threading.Event()
        try:
            session = requests.Session()
            wait_until(
                lambda: (
                    len([n for n in session.get(manager.url + "/api/task/node").json()["nodes"] if n["status"] == 0])
                    == args.agents
                ),
                timeout=30,
                what="agents online",
            )
            deploys = bench_deploy(manager, session, args.deploys)
            print(
                f"deploy -> {COMPONENTS} process components running on {args.agents} real agents, "
                f"{len(deploys)} deploys: p50 {ms(pct(deploys, 0.5))}, p99 {ms(pct(deploys, 0.99))}"
            )
            for agent in agents:
                agent.terminate()

            facts = {"cpu_count": 8, "memory_total_mb": 16384, "gpu_count": 0, "labels": {"sim": "yes"}}
            client = register_nodes(manager, env, 1000, facts)
            body = business_body("metrics")
            for c in body["components"]:
                c["affinity"] = {"node_labels": {"sim": "yes"}}
            body["components"] = [dict(c, component_id=f"m{i}") for i in range(100) for c in body["components"][:1]]
            answer = session.post(manager.url + "/api/businesses", json=body)
            answer.raise_for_status()
            business_id = answer.json()["business_id"]
            placed = [
                {"business_id": business_id, **c}
                for c in session.get(f"{manager.url}/api/businesses/{business_id}/components").json()
            ]
            thread = threading.Thread(
                target=stream_metrics, args=(client, placed, args.reports_per_second, stop), daemon=True
            )
            thread.start()
            bench_node_list(manager, session, 30)  # warm up
            lat = bench_node_list(manager, session, args.requests)
            print(
                f"GET /api/task/node with 1000 nodes while {len(placed)} components report "
                f"{args.reports_per_second:g}/s: p50 {ms(pct(lat, 0.5))}, p99 {ms(pct(lat, 0.99))}"
            )
        finally:
            stop.set()
            for agent in agents:
                if agent.alive():
                    agent.terminate()
            manager.terminate()


if __name__ == "__main__":
    main()
