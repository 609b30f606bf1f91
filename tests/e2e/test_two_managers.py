"""Two manager hosts on one PostgreSQL database and one Redis: both answer every call alike, the duties run on
exactly one, and when that one is killed (-9, no goodbye) the other takes them over within seconds.

Real parts throughout: two `manager` processes (each its own gunicorn) given the same --db-url and
--redis-url, a database of the test's own on the machine's PostgreSQL, a redis-server with a password, and two
real agents, one joined through each manager.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import keys
from shared.paths import local_join_token_path
from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import RedisServer, wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 1.0
TAKEOVER_LIMIT = 8.0
"""Seconds from the duties holder's death to the other host holding them: the lock's expiry (5 s) and a tick."""


@pytest.fixture
def shared_redis() -> Iterator[RedisServer]:
    server = RedisServer(password="two-managers-secret").start()
    yield server
    server.stop()


def _holder(client: redis.Redis) -> str:
    value = client.get(keys.DUTIES_LOCK)
    return value.decode() if value else ""


def _holder_pid(client: redis.Redis) -> int | None:
    """The pid of the manager process whose duties hold the lock (its token is host:pid:uuid)."""
    parts = _holder(client).split(":")
    return int(parts[1]) if len(parts) == 3 else None


def _nodes(manager: Manager) -> dict[str, int]:
    return {n["hostname"]: n["status"] for n in manager.get("/api/task/node").json()["nodes"]}


def _run(manager: Manager, command: str) -> dict[str, Any]:
    body = {"name": "two-managers", "command": command, "targets": ["*"]}
    answer = requests.post(f"{manager.url}/api/tasks?wait=30", json=body, timeout=40)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_two_managers_share_the_fleet_and_hand_over_the_duties(
    tmp_path: Path, shared_redis: RedisServer, postgres_url: str
) -> None:
    env = isolated_env(tmp_path)
    for host in ("host-a", "host-b"):
        (tmp_path / host).mkdir()
    shared = ["--redis-url", shared_redis.url, "--db-url", postgres_url]
    first = Manager(tmp_path / "host-a", env, shared)
    second = Manager(tmp_path / "host-b", env, shared)
    agents: list[Agent] = []
    try:
        first.start()
        second.start()
        # One join token for the fleet: the second host took the first one's from the database.
        runtime = Path(env["CORRAL_RUNTIME_DIR"])
        tokens = {(runtime / local_join_token_path(m.port).name).read_text() for m in (first, second)}
        assert len(tokens) == 1

        # An agent joins through each host; both hosts see both nodes online.
        agents = [Agent(tmp_path, env, first, "via-a", INTERVAL), Agent(tmp_path, env, second, "via-b", INTERVAL)]
        for agent in agents:
            agent.start()
        for manager in (first, second):
            wait_until(
                lambda m=manager: _nodes(m) == {"via-a": 0, "via-b": 0}, timeout=30, what=f"both nodes on {manager.url}"
            )

        # The duties run on exactly one host: one lock holder, and only its log says it took the lock.
        client = redis.Redis.from_url(shared_redis.url)
        wait_until(lambda: _holder_pid(client) in (first.pid, second.pid), timeout=15, what="a duties holder")
        holder, other = (first, second) if _holder_pid(client) == first.pid else (second, first)
        assert "duties lock" in holder.output() and "taken by" in holder.output()
        assert "taken by" not in other.output()

        # Work posted to either host is dispatched, applied by the duties and read back through the other.
        for posted, reader in ((first, second), (second, first)):
            result = _run(posted, "echo hi-$(hostname)")
            assert result["status"] == "completed" and result["completed_hosts"] == 2, result
            again = reader.get(f"/api/tasks/{result['task_id']}").json()
            assert again["status"] == "completed"
            assert sorted(h["stdout"] for h in again["hosts"]) == sorted(h["stdout"] for h in result["hosts"])
        template = {"name": "shared", "task_groups": [{"tasks": [{"name": "t", "config": {"command": "true"}}]}]}
        assert first.post("/api/task/task_group", template).status_code == 200
        again_named = second.post("/api/task/task_group", template)  # the same rows, the same rules
        assert again_named.status_code == 409, again_named.text

        # The holder dies without a word; the other host takes the duties over.
        killed_at = time.monotonic()
        holder.kill()
        wait_until(lambda: _holder_pid(client) == other.pid, timeout=TAKEOVER_LIMIT + 5, what="the duties taken over")
        takeover = time.monotonic() - killed_at
        print(f"duties taken over {takeover:.1f} s after the holder was killed")
        assert takeover <= TAKEOVER_LIMIT
        assert "taken by" in other.output()

        # The survivor carries on: both nodes stay online (no false offline from the gap), and a fleet task
        # through it ends, its results applied by the duties it now runs.
        assert _nodes(other) == {"via-a": 0, "via-b": 0}
        result = _run(other, "echo after-$(hostname)")
        assert result["status"] == "completed" and result["completed_hosts"] == 2, result
        assert _nodes(other) == {"via-a": 0, "via-b": 0}
        assert other.terminate() == 0
        client.close()
    finally:
        for agent in agents:
            if agent.alive():
                agent.terminate()
        for manager in (first, second):
            if manager.alive():
                manager.kill()
