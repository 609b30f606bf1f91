"""Fault: the manager's private redis-server is killed (kill -9). The manager restarts it and carries on;
the API answers 503 only while Redis is down; agents come back and run commands again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tests.e2e.harness import Agent, Manager
from tests.faults.faults_support import manager_and_agent
from tests.support import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent]]:
    with manager_and_agent(tmp_path, "crash-1", 0.5) as (manager, agent, _leftovers):
        yield manager, agent


def private_redis(manager: Manager) -> psutil.Process:
    [found] = [p for p in psutil.Process(manager.pid).children() if p.name() == "redis-server"]
    return found


def online(manager: Manager) -> bool:
    answer = manager.get("/api/task/node")
    return answer.status_code == 200 and answer.json()["nodes"][0]["status"] == 0


def test_a_killed_private_redis_is_restarted_and_the_fleet_carries_on(stack: tuple[Manager, Agent]) -> None:
    manager, agent = stack
    wait_until(lambda: online(manager), timeout=30, what="the node online")
    before = private_redis(manager)

    killed_at = time.monotonic()
    os.kill(before.pid, signal.SIGKILL)
    codes: list[int] = []

    def serving_again() -> bool:
        try:
            codes.append(manager.get("/api/task/node").status_code)
        except requests.RequestException:
            codes.append(0)
        return codes[-1] == 200 and 503 in codes

    wait_until(serving_again, timeout=30, interval=0.02, what=f"503 then 200\n{manager.output()[-3000:]}")
    back_at = time.monotonic()
    assert set(codes) <= {200, 503}, codes  # never a 500, never a dropped connection
    assert manager.alive(), manager.output()
    after = private_redis(manager)
    assert after.pid != before.pid
    wait_until(
        lambda: "private redis-server died" in (log := manager.output()) and "restarted on port" in log,
        what="the manager to log the death and the restart",
    )
    # ACL SETUSER keeps nothing on disk: the restarted Redis got the node's own user again.
    wait_until(lambda: "1 node Redis users made" in manager.output(), what="the node users made again")

    # The agent finds Redis again by itself, and commands run on it again.
    wait_until(lambda: online(manager), timeout=60, what=f"the node online again\n{agent.output()[-3000:]}")
    answer = manager.post("/api/tasks?wait=60", {"name": "after", "command": "echo back", "targets": ["*"]})
    assert answer.status_code in (200, 201), answer.text
    [host] = answer.json()["hosts"]
    assert (host["status"], host["stdout"]) == ("succeeded", "back\n"), host
    print(f"\nAPI 503 for {back_at - killed_at:.2f} s ({codes.count(503)} answers), node and command ok after")
    assert manager.terminate() == 0
