"""Secret env delivered by a real manager to a real agent: the command gets the value, while the Redis job,
the logs, the answers and the agent's records never hold it."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import cast

import pytest
import redis
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-9f3c1a"


def _online(manager: Manager) -> int:
    return sum(1 for node in manager.get("/api/task/node").json()["nodes"] if node["status"] == 0)


def _job_hashes(manager: Manager) -> list[dict[bytes, bytes]]:
    """Every RQ job hash in the manager's Redis, as stored."""
    client = redis.Redis.from_url(manager.redis_url())
    try:
        keys = [key for key in client.scan_iter("rq:job:*") if client.type(key) == b"hash"]
        return [cast(dict[bytes, bytes], client.hgetall(key)) for key in keys]
    finally:
        client.close()


def test_a_fleet_task_gets_its_secret_env_and_nothing_else_holds_it(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, "secret-a", 0.5)
    try:
        agent.start()
        wait_until(lambda: _online(manager) == 1, timeout=30, what="agent online")
        body = {
            "name": "s",
            "command": 'echo "$DB_PASSWORD" | rev',
            "targets": ["*"],
            "secretEnv": {"DB_PASSWORD": SECRET},
        }
        response = requests.post(f"{manager.url}/api/tasks?wait=30", json=body, timeout=40)
        assert response.status_code == 201, response.text
        result = response.json()
        # Delivered: the command got it. It prints it reversed, so that the plain value may be looked for
        # everywhere below (a command's output is its own: corral does not scrub it).
        assert result["hosts"][0]["stdout"] == SECRET[::-1] + "\n", result["hosts"]
        answered = dict(result, hosts=[])
        assert answered["secretEnv"] == {"DB_PASSWORD": "(secret)"} and SECRET not in json.dumps(answered)
        hashes = _job_hashes(manager)
        data = [zlib.decompress(h[b"data"]) for h in hashes if b"data" in h]
        assert any(b"secret_env" in blob for blob in data), "no job carried a sealed secret env"
        assert all(SECRET.encode() not in blob for blob in data)
        assert all(SECRET.encode() not in value for h in hashes for value in h.values())
    finally:
        agent.terminate()
        manager.terminate()
    # Logs, the agent's records, the database and Redis's append-only files: no plaintext anywhere.
    files = [manager.log, agent.log, *agent.data_dir.rglob("*"), *manager.db_path.parent.rglob("*")]
    holding = [str(path) for path in files if path.is_file() and SECRET.encode() in path.read_bytes()]
    assert holding == []
