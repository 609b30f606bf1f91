"""Fault: a big fleet under API load (issue 10's soak). 1,000 simulated agents (bench/fleet_sim.py: joined
through the real endpoint, signed heartbeats every 5 s, their jobs answered) against a real manager with its
default offline window (3 intervals), for CORRAL_SOAK_SECONDS (600 by default), while client threads list
nodes and tasks, create templates and send fleet tasks to a few nodes. No node may ever be judged offline
while its simulator keeps beating: no node.offline audit entry, no node ever read offline, and no request
may fail."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from shared import heartbeat, keys
from tests.e2e.harness import Manager, isolated_env
from tests.faults.faults_support import audit, quantile
from tests.support import wait_until

pytestmark = pytest.mark.e2e

NODES = 1000
INTERVAL = 5.0
WINDOW = 3 * INTERVAL  # the manager's default offline window: 3 intervals
SOAK_SECONDS = float(os.environ.get("CORRAL_SOAK_SECONDS", "600"))
SIM_PROCESSES = 2
PACE = {"node list": 0.2, "task list": 0.5, "fleet task": 1.0, "template": 1.0}
"""Seconds between two requests of each client thread: a few operators and scripts, not a benchmark."""

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Manager, subprocess.Popen[bytes], Path]]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    sim_log = tmp_path / "fleet_sim.log"
    args = [
        sys.executable,
        str(ROOT / "bench" / "fleet_sim.py"),
        "--manager-url",
        manager.url,
        "--token-file",
        str(manager.db_path.parent / "join-token"),
        "--nodes",
        str(NODES),
        "--processes",
        str(SIM_PROCESSES),
        "--interval",
        str(INTERVAL),
        "--redis-url",
        manager.redis_url(),
    ]
    with open(sim_log, "wb") as out:
        sim = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": str(ROOT)})
    try:
        yield manager, sim, sim_log
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(20)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait(10)
        manager.terminate()


def private_redis(manager: Manager) -> redis.Redis:
    """The manager's own Redis (its password and port files), to count the heartbeats that land."""
    directory = manager.db_path.parent / "corral-redis"
    password = (directory / "password").read_text().strip()
    port = int((directory / "port").read_text().strip())
    return redis.Redis(host="127.0.0.1", port=port, password=password)


class Load:
    """Client threads, each sending one kind of request every PACE seconds, noting latencies and failures;
    the node list reader also notes every node it reads offline."""

    def __init__(self, manager: Manager, hostnames: list[str]) -> None:
        self.manager = manager
        self.hostnames = hostnames
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.failures: collections.Counter[str] = collections.Counter()
        self.offline_reads: list[tuple[float, str]] = []
        self._stop = threading.Event()
        kinds: dict[str, Callable[[requests.Session], requests.Response]] = {
            "node list": lambda s: s.get(manager.url + "/api/task/node", timeout=30),
            "task list": lambda s: s.get(manager.url + "/api/tasks?page_size=50", timeout=30),
            "fleet task": lambda s: s.post(
                manager.url + "/api/tasks",
                json={"name": "soak", "command": "echo soak", "targets": random.sample(hostnames, 5), "timeout": 60},
                timeout=30,
            ),
            "template": lambda s: s.post(
                manager.url + "/api/task/task_group",
                json={
                    "name": f"soak-{uuid.uuid4().hex[:8]}",
                    "task_groups": [{"tasks": [{"name": "t", "config": {"command": "sleep 1"}}]}],
                },
                timeout=30,
            ),
        }
        self._threads = [
            threading.Thread(target=self._run, args=(kind, send), daemon=True) for kind, send in kinds.items()
        ]

    def _run(self, kind: str, send: Callable[[requests.Session], requests.Response]) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                answer = send(session)
            except requests.RequestException as exc:
                self.failures[f"{kind}: {type(exc).__name__}"] += 1
            else:
                self.latencies[kind].append(time.perf_counter() - t0)
                if not answer.ok:
                    self.failures[f"{kind}: {answer.status_code} {answer.text[:80]}"] += 1
                elif kind == "node list":
                    now = time.time()
                    self.offline_reads += [(now, n["hostname"]) for n in answer.json()["nodes"] if n["status"] != 0]
            self._stop.wait(max(0.0, PACE[kind] - (time.perf_counter() - t0)))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(40)


class BeatCounter:
    """Reads the nodes' heartbeat summaries every second and counts the values that changed: one per beat landed
    (a node beats every 5 s, so no beat is missed between two reads); notes the longest a node went without
    one (to the second), the premise of the test: a node silent for a whole window is offline for real."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.beats = 0
        self.longest_gap = 0.0
        self.started = time.monotonic()
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Every node has joined and beaten by now: their summary keys name them.
        ids = [key.decode().split(":")[2] for key in self.client.scan_iter(match=keys.node_summary("*"), count=1000)]
        last = heartbeat.read_raw_summaries(self.client, ids)[1]
        changed_at = dict.fromkeys(last, time.monotonic())
        while not self._stop.wait(1.0):
            current = heartbeat.read_raw_summaries(self.client, ids)[1]
            now = time.monotonic()
            for node, raw in current.items():
                if last.get(node) != raw:
                    self.beats += 1
                    self.longest_gap = max(self.longest_gap, now - changed_at.get(node, now))
                    changed_at[node] = now
            self.longest_gap = max(self.longest_gap, max(now - t for t in changed_at.values()))
            last = current

    def __enter__(self) -> BeatCounter:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.seconds = time.monotonic() - self.started


def test_a_thousand_agents_under_api_load_are_never_falsely_offline(
    fleet: tuple[Manager, subprocess.Popen[bytes], Path],
) -> None:
    manager, sim, sim_log = fleet
    joined = wait_until(
        lambda: "nodes joined and heartbeating" in sim_log.read_text() or sim.poll() is not None,
        timeout=180,
        what="the simulated fleet joined",
    )
    assert joined and sim.poll() is None, sim_log.read_text()[-3000:]

    def all_online() -> bool:
        listed = manager.get("/api/task/node").json()["nodes"]
        return len(listed) == NODES and all(n["status"] == 0 for n in listed)

    wait_until(all_online, timeout=60, what="every simulated node online")
    hostnames = [n["hostname"] for n in manager.get("/api/task/node").json()["nodes"]]
    offline_before = len(audit(manager, "node.offline"))
    client = private_redis(manager)

    with BeatCounter(client) as beats, Load(manager, hostnames) as load:
        soak_end = time.monotonic() + SOAK_SECONDS
        # The soak's duration is the fault itself; the simulator must live through it.
        wait_until(
            lambda: time.monotonic() >= soak_end or sim.poll() is not None,
            timeout=SOAK_SECONDS + 30,
            interval=1.0,
            what="the soak",
        )
    client.close()
    assert sim.poll() is None, f"the simulator died\n{sim_log.read_text()[-3000:]}"

    offline_events = audit(manager, "node.offline")[offline_before:]
    rate = beats.beats / beats.seconds
    print(f"\n{NODES} simulated agents, interval {INTERVAL:g} s, {beats.seconds:.0f} s under API load:")
    print(
        f"  heartbeats landed: {rate:.0f}/s (nominal {NODES / INTERVAL:.0f}/s); longest a node went without one: "
        f"{beats.longest_gap:.0f} s (offline window {WINDOW:g} s)"
    )
    for kind, samples in load.latencies.items():
        print(
            f"  {kind}: {len(samples)} requests, p50 {quantile(samples, 0.5) * 1000:.1f} ms, "
            f"p99 {quantile(samples, 0.99) * 1000:.1f} ms"
        )
    print(
        f"  failed requests: {sum(load.failures.values())}; offline transitions: {len(offline_events)}; "
        f"offline reads: {len(load.offline_reads)}"
    )
    for failure, count in load.failures.most_common(5):
        print(f"    {count} x {failure}")

    # The premise: every simulator kept beating well within the window (fleet_sim spaces its beats a little
    # over the interval, more so on a busy machine: the rate is a figure, the gap is what matters).
    assert beats.beats and beats.longest_gap < WINDOW - 2, "a simulated node went silent: it was offline for real"
    assert not offline_events, f"nodes judged offline while beating: {offline_events[:5]}"
    assert not load.offline_reads, f"nodes read offline while beating: {load.offline_reads[:5]}"
    assert not load.failures, dict(load.failures)
    assert all(load.latencies[kind] for kind in PACE), "a client thread got no answer at all"
