"""Fault: a write storm (issue 10, item 4). 50 clients create templates and fleet tasks as fast as they can
against `manager --workers 4` (real gunicorn, private Redis, one real agent running the tasks, 100 more nodes
joined and heartbeating so that every task holds 101 hosts): no request may fail because the database is busy
("database is locked" was a 500), and every write answered 2xx is there afterwards."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, Manager, isolated_env, join_simulated_nodes
from tests.faults.faults_support import listed
from tests.storm import storm
from tests.support import wait_until

pytestmark = pytest.mark.e2e

WORKERS = 4
WRITERS = 50
SECONDS = 15.0
"""How long the storm lasts: before the fix, 4 x 50 writers for 15 s logged "database is locked" every run."""

SIMULATED_NODES = 100
"""Nodes besides the real agent: a task on "*" then writes 101 host rows in its transaction, as on a fleet."""

LOCKED = "database is locked"


def online(manager: Manager) -> int:
    return sum(1 for node in manager.get("/api/task/node").json()["nodes"] if node["status"] == 0)


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Manager]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env, ["--workers", str(WORKERS)])
    manager.start()
    agent = Agent(tmp_path, env, manager, "storm-1", 1.0)
    agent.start()
    try:
        wait_until(lambda: online(manager) == 1, timeout=30, what="the agent's node online")
        join_simulated_nodes(manager, env, SIMULATED_NODES)[0].close()
        wait_until(lambda: online(manager) == 1 + SIMULATED_NODES, timeout=30, what="every node online")
        yield manager
    finally:
        for proc in (agent, manager):
            if proc.alive():
                proc.terminate()


def test_a_write_storm_on_four_workers_never_fails_for_a_busy_database(stack: Manager) -> None:
    manager = stack
    tallies, wall = storm(manager.url, WRITERS, SECONDS)

    latencies = [s for t in tallies for samples in t.latencies.values() for s in samples]
    failures: collections.Counter[str] = collections.Counter()
    for t in tallies:
        for (kind, status, error), count in t.failures.items():
            failures[f"{kind}: {status or 'no answer'} {error}"] += count
    templates = {name for t in tallies for name in t.templates}
    tasks = {task_id for t in tallies for task_id in t.tasks}
    print(
        f"\n{WORKERS} workers x {WRITERS} writers, {wall:.1f} s: {len(latencies) / wall:.0f} requests/s, "
        f"p50 {quantile(latencies, 0.5) * 1000:.1f} ms, p99 {quantile(latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms; 2xx: {len(templates)} templates, {len(tasks)} tasks; "
        f"failed: {sum(failures.values())}"
    )
    for failure, count in failures.most_common():
        print(f"  {count} x {failure}")

    assert manager.output().count(LOCKED) == 0, f'the manager logged "{LOCKED}"'
    assert not failures, f"requests failed: {dict(failures)}"
    assert len(templates) > WRITERS and len(tasks) > WRITERS, "the storm hardly wrote anything"
    # Every write the manager answered 2xx is there afterwards.
    assert templates <= listed(manager, "/api/templates", "templates", "name")
    assert tasks <= listed(manager, "/api/tasks", "tasks", "task_id")
