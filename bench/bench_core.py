"""Core figures: node list latency at 100 and 1,000 nodes, and deploy -> process running on an agent.

Runs a real `manager` (gunicorn, private Redis) and one real `agent` on this machine, then registers
simulated nodes through the real join endpoint and heartbeats them through shared/heartbeat.py.
Usage: .venv/bin/python bench/bench_core.py [--deploys 60] [--requests 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Agent, Manager, isolated_env, join_simulated_nodes  # noqa: E402
from tests.support import wait_until  # noqa: E402


def bench_deploy(manager: Manager, session: requests.Session, runs: int) -> list[float]:
    body = {"name": "bench", "task_groups": [{"tasks": [{"name": "t", "config": {"command": "sleep 600"}}]}]}
    session.post(manager.url + "/api/task/task_group", json=body).raise_for_status()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        dep_id = session.post(manager.url + "/api/task/task_group/deploy", json={"name": "bench"}).json()["id"]
        while True:
            dep = session.get(f"{manager.url}/deployments/{dep_id}").json()
            if dep["tasks"][0]["state"] == "RUNNING":
                break
            if time.perf_counter() - t0 > 10:
                raise RuntimeError(f"deploy {dep_id} not running after 10 s: {dep}")
            time.sleep(0.001)
        samples.append(time.perf_counter() - t0)
        session.post(manager.url + "/api/task/task_group/stop", json={"id": dep_id}).raise_for_status()
    return samples


JOB_KEYS: dict[str, bytes] = {}
"""The signing key of every node register_nodes() joined (its reports must carry its signature)."""


def register_nodes(
    manager: Manager, env: dict[str, str], count: int, facts: dict[str, object] | None = None
) -> redis.Redis:
    """Join ``count`` simulated nodes (with ``facts``) through the real endpoint and heartbeat each once."""
    client, keys = join_simulated_nodes(manager, env, count, facts)
    JOB_KEYS.update(keys)
    return client


def bench_node_list(manager: Manager, session: requests.Session, requests_count: int) -> list[float]:
    samples = []
    for _ in range(requests_count):
        t0 = time.perf_counter()
        answer = session.get(manager.url + "/api/task/node")
        answer.raise_for_status()
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=60)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    print(machine())
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        # The limiter still counts every GET (its cost is part of the figure), but a node list of 100 nodes now
        # answers faster than the default 500 requests a second allows one client: back to back, 500 GETs hit it.
        manager = Manager(workdir, env, ["--rate-limit", "100000/second"])
        manager.start()
        agent = Agent(workdir, env, manager, "bench-agent", 1.0)
        agent.start()
        try:
            session = requests.Session()
            wait_until(
                lambda: [n for n in session.get(manager.url + "/api/task/node").json()["nodes"] if n["status"] == 0],
                timeout=30,
                what="agent online",
            )
            deploys = bench_deploy(manager, session, args.deploys)
            print(
                f"deploy -> RUNNING seen through the API, {len(deploys)} deploys: "
                f"p50 {ms(pct(deploys, 0.5))}, p99 {ms(pct(deploys, 0.99))}"
            )
            agent.terminate()
            registered = 1
            for target in (100, 1000):
                register_nodes(manager, env, target - registered)
                registered = target
                bench_node_list(manager, session, 50)  # warm up
                lat = bench_node_list(manager, session, args.requests)
                print(
                    f"GET /api/task/node with {target} nodes, {len(lat)} requests: "
                    f"p50 {ms(pct(lat, 0.5))}, p99 {ms(pct(lat, 0.99))}, mean {ms(statistics.mean(lat))}"
                )
        finally:
            if agent.alive():
                agent.terminate()
            manager.terminate()


if __name__ == "__main__":
    main()
