"""Apps and node queries (document 003): the figures issue 12 asks for, on this machine.

1. a node query over 10,000 simulated nodes (GET /api/nodes?q=...): p50 and p99;
2. an app of 100 instances over 1,000 simulated nodes: POST -> every instance placed, and -> every one running;
3. an instance's process killed -> running again (a new pid reported through the API), p50 over 20 kills;
4. health-check cost: one real agent with 100 HTTP-checked instances, checked every second: its CPU;
5. a node lost (agent SIGKILLed) -> its instances running on other nodes, against the offline detection time.

Runs a real `manager` (gunicorn, private Redis), real agents for 3-5 and bench/fleet_sim.py for 1-2.
Usage: .venv/bin/python bench/bench_apps.py [--skip-10k] [--only N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import simulated  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import kill_marked, wait_until  # noqa: E402

SERVER = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "app_payloads" / "http_server.py"
MARK = "corral-bench-app"


def http_app(name: str, instances: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "toProcess": sys.executable,
        "args": [str(SERVER), MARK, "$PORT0"],
        "ports": [0],
        "instances": instances,
        **extra,
    }


def check(interval: float) -> dict[str, Any]:
    return {
        "protocol": "HTTP",
        "path": "/",
        "portIndex": 0,
        "initialDelaySeconds": 0,
        "intervalSeconds": interval,
        "timeoutSeconds": 2,
        "maxConsecutiveFailures": 3,
    }


def app(session: requests.Session, manager: Manager, name: str) -> dict[str, Any]:
    answer = session.get(f"{manager.url}/api/apps/{name}")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def running(session: requests.Session, manager: Manager, name: str, count: int) -> Callable[[], list[Any] | None]:
    def probe() -> list[Any] | None:
        rows = [i for i in app(session, manager, name)["instances"] if i["desired"] == "run"]
        good = [i for i in rows if i["state"] == "running" and i["health"] == "healthy"]
        return good if len(good) == count else None

    return probe


def kill_payloads() -> None:
    kill_marked(MARK)


def bench_query(manager: Manager, session: requests.Session, label: str, runs: int = 200) -> None:
    queries = (
        "hostname:sim10k-0000*",  # a handful of nodes
        "tags:rack-3 AND os.cpus:8",
        "tags:web AND os.cpus:>4",
        "networks.address:[10.0.10.0 TO 10.0.20.255]",
        "*",
    )
    for query in queries:
        samples, found = [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            answer = session.get(manager.url + "/api/nodes", params={"q": query})
            answer.raise_for_status()
            samples.append(time.perf_counter() - t0)
            found = len(answer.json()["nodes"])
        print(
            f"node query over {label}, q={query!r} ({found} nodes answered), {runs} calls: "
            f"p50 {ms(pct(samples, 0.5))}, p99 {ms(pct(samples, 0.99))}"
        )


def bench_placement(manager: Manager, session: requests.Session) -> None:
    placed_s, running_s = [], []
    for run in range(5):
        name = f"wide{run}"
        t0 = time.perf_counter()
        session.post(manager.url + "/api/apps", json=http_app(name, 100, nodeQuery="tags:web")).raise_for_status()
        wait_until(
            lambda name=name: len([i for i in app(session, manager, name)["instances"] if i["node_id"]]) == 100,
            timeout=60,
            interval=0.005,
            what="100 instances placed",
        )
        placed_s.append(time.perf_counter() - t0)
        wait_until(running(session, manager, name, 100), timeout=60, interval=0.01, what="100 instances running")
        running_s.append(time.perf_counter() - t0)
        session.delete(f"{manager.url}/api/apps/{name}").raise_for_status()
    print(
        f"app of 100 instances over 1,000 simulated nodes (tags:web: 500 match), median of 5: "
        f"call -> every instance placed {ms(statistics.median(placed_s))}, "
        f"-> every instance reported running {ms(statistics.median(running_s))}"
    )


def bench_restart(manager: Manager, session: requests.Session, kills: int, delay: float) -> None:
    # backoffFactor 1: every kill meets the same (first) backoff step instead of a growing one.
    body = http_app("phoenix", 1, healthChecks=[check(0.5)], backoffSeconds=delay, backoffFactor=1.0)
    session.post(manager.url + "/api/apps", json=body).raise_for_status()
    samples = []
    for _ in range(kills):
        (row,) = wait_until(running(session, manager, "phoenix", 1), timeout=60, interval=0.01, what="running")
        t0 = time.perf_counter()
        psutil.Process(row["pid"]).kill()

        def again(old: int = row["pid"]) -> bool:
            rows = app(session, manager, "phoenix")["instances"]
            return bool(rows) and rows[0]["state"] == "running" and rows[0]["pid"] not in (None, old)

        wait_until(again, timeout=60, interval=0.005, what="running again")
        samples.append(time.perf_counter() - t0)
    print(
        f"instance SIGKILLed -> running again (its new pid read through the API), {kills} kills, backoff "
        f"{delay:g} s: p50 {ms(pct(samples, 0.5))}, p99 {ms(pct(samples, 0.99))}"
    )
    session.delete(f"{manager.url}/api/apps/phoenix").raise_for_status()
    wait_until(lambda: not app_exists(session, manager, "phoenix"), timeout=60, what="deleted")


def bench_health_cost(manager: Manager, session: requests.Session, agent: Agent, count: int, window: float) -> None:
    body = http_app("checked", count, healthChecks=[check(1.0)], nodeQuery=f"hostname:{agent.hostname}")
    session.post(manager.url + "/api/apps", json=body).raise_for_status()
    wait_until(running(session, manager, "checked", count), timeout=300, interval=1, what=f"{count} healthy")
    proc = psutil.Process(agent.pid)
    t0 = sum(proc.cpu_times()[:2])
    time.sleep(window)
    cpu = (sum(proc.cpu_times()[:2]) - t0) / window * 100
    print(
        f"health checks: one agent with {count} HTTP-checked instances, every 1 s, over {window:.0f} s: "
        f"agent {cpu:.2f}% of a core ({psutil.Process(agent.pid).memory_info().rss / 2**20:.0f} MB RSS)"
    )
    session.delete(f"{manager.url}/api/apps/checked").raise_for_status()
    wait_until(lambda: not app_exists(session, manager, "checked"), timeout=120, what="deleted")


def app_exists(session: requests.Session, manager: Manager, name: str) -> bool:
    return session.get(f"{manager.url}/api/apps/{name}").status_code == 200


def bench_node_loss(manager: Manager, session: requests.Session, agents: dict[str, Agent], interval: float) -> None:
    session.post(manager.url + "/api/apps", json=http_app("moved", 2, healthChecks=[check(0.5)])).raise_for_status()
    rows = wait_until(running(session, manager, "moved", 2), timeout=60, what="2 running")
    nodes = {n["id"]: n["hostname"] for n in session.get(manager.url + "/api/nodes").json()["nodes"]}
    victim = nodes[rows[0]["node_id"]]
    t0 = time.perf_counter()
    agents[victim].kill()

    def elsewhere() -> bool:
        good = running(session, manager, "moved", 2)()
        return good is not None and all(nodes[r["node_id"]] != victim for r in good)

    wait_until(elsewhere, timeout=120, interval=0.01, what="replaced")
    took = time.perf_counter() - t0
    print(
        f"node lost (agent SIGKILLed, heartbeat every {interval:g} s, offline after 3 intervals = {3 * interval:g} s)"
        f" -> its instance running and healthy on another node: {ms(took)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-10k", action="store_true")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--checked", type=int, default=100)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--only", type=int, action="append", help="run only these parts (1-5)")
    args = parser.parse_args()
    parts = set(args.only or [1, 2, 3, 4, 5])
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    try:
        if parts & {1, 2}:
            with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
                workdir = Path(tmp)
                manager = Manager(workdir, isolated_env(workdir), ["--workers", "2"])
                manager.start()
                session = requests.Session()
                try:
                    sim = simulated(manager, workdir, session, 1000, "sim1k")
                    if 2 in parts:
                        bench_placement(manager, session)
                    if 1 in parts:
                        bench_query(manager, session, "1,000 simulated nodes")
                    sim.terminate()
                    sim.wait(30)
                    if 1 in parts and not args.skip_10k:
                        sim = simulated(manager, workdir, session, 10000, "sim10k")
                        bench_query(manager, session, "11,000 nodes (10,000 online)")
                        sim.terminate()
                        sim.wait(60)
                finally:
                    manager.terminate()
        if parts & {3, 4, 5}:
            with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
                workdir = Path(tmp)
                env = isolated_env(workdir)
                manager = Manager(workdir, env, ["--workers", "2"])
                manager.start()
                session = requests.Session()
                interval = 1.0
                agents = {h: Agent(workdir, env, manager, h, interval) for h in ("a1", "a2", "a3")}
                try:
                    agents["a1"].start()
                    wait_until(lambda: len(session.get(manager.url + "/api/nodes").json()["nodes"]) == 1, timeout=30)
                    if 3 in parts:
                        for delay in (0.0, 1.0):
                            bench_restart(manager, session, args.kills, delay)
                    if 5 in parts:
                        agents["a2"].start()
                        agents["a3"].start()
                        wait_until(
                            lambda: (
                                sum(
                                    n["status"] == "online"
                                    for n in session.get(manager.url + "/api/nodes").json()["nodes"]
                                )
                                == 3
                            ),
                            timeout=30,
                        )
                        bench_node_loss(manager, session, agents, interval)
                    if 4 in parts:  # last: stopping 100 instances would slow what follows
                        alive = next(agent for agent in agents.values() if agent.alive())
                        bench_health_cost(manager, session, alive, args.checked, args.window)
                finally:
                    for agent in agents.values():
                        if agent.alive():
                            agent.terminate()
                    manager.terminate()
    finally:
        kill_payloads()


if __name__ == "__main__":
    main()
