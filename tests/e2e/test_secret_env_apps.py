"""Secret env of an app and of a business component delivered by a real manager to a real agent: the process
gets the value at its first start, at a restart after it died and after its agent restarted, while the Redis
jobs, the logs, the answers and the agent's records (apps.json, components.json) never hold it."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import kill_marked, marked_processes, wait_until

pytestmark = pytest.mark.e2e

SECRET = "e2e-app-secret-7d2b"
MARK = "corral-e2e-secret-app"  # in the payloads' argv: what the test kills, and nothing else
PYTHON = sys.executable


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _job_blobs(manager: Manager) -> list[bytes]:
    """Every value of every RQ job hash in the manager's Redis, the job's arguments uncompressed."""
    client = redis.Redis.from_url(manager.redis_url())
    try:
        blobs: list[bytes] = []
        for key in client.scan_iter("rq:job:*"):
            if client.type(key) != b"hash":
                continue
            fields = cast(dict[bytes, bytes], client.hgetall(key))
            blobs += list(fields.values())
            if b"data" in fields:
                blobs.append(zlib.decompress(fields[b"data"]))
        return blobs
    finally:
        client.close()


def _payload(out: Path, tag: str) -> str:
    # Writes the value reversed (so the plain value may be looked for everywhere), then stays up until killed.
    return f'echo "$DB_PASSWORD" | rev >> {out}; exec {PYTHON} -c "import time; time.sleep(600)" {MARK} {tag}'


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Manager, Agent]]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, "secret-apps", 0.5)
    try:
        agent.start()
        online = lambda: [n for n in manager.get("/api/nodes").json()["nodes"] if n["status"] == "online"]  # noqa: E731
        wait_until(online, timeout=30, what="agent online")
        yield manager, agent
    finally:
        if agent.alive():
            agent.terminate()
        manager.terminate()
        kill_marked(MARK)


def _no_plain_value(manager: Manager, agent: Agent) -> None:
    assert all(SECRET.encode() not in blob for blob in _job_blobs(manager))
    answers = [manager.get("/api/apps").text, manager.get("/api/businesses").text, manager.get("/api/audit").text]
    assert all(SECRET not in text for text in answers)
    files = [manager.log, agent.log, *agent.data_dir.rglob("*"), *manager.db_path.parent.rglob("*")]
    holding = [str(path) for path in files if path.is_file() and SECRET.encode() in path.read_bytes()]
    assert holding == []


def test_an_app_instance_gets_its_secret_at_every_start_and_nothing_else_holds_it(
    tmp_path: Path, fleet: tuple[Manager, Agent]
) -> None:
    manager, agent = fleet
    out = tmp_path / "app-secret.out"
    body = {
        "name": "vault",
        "toProcess": _payload(out, "app"),
        "secretEnvs": {"DB_PASSWORD": SECRET},
        "backoffSeconds": 0.2,
    }
    created = manager.post("/api/apps", body)
    assert created.status_code == 201, created.text
    assert created.json()["secretEnvs"] == {"DB_PASSWORD": "(secret)"} and SECRET not in created.text
    wait_until(lambda: len(_lines(out)) == 1, timeout=30, what=f"the first start\n{agent.output()[-2000:]}")
    # The process dies: its restart (after the backoff) opens the sealed value again.
    for proc in marked_processes(MARK):
        proc.kill()
    wait_until(lambda: len(_lines(out)) == 2, timeout=30, what=f"the restart\n{agent.output()[-2000:]}")
    # The agent restarts (the instance keeps running, adopted by the next agent), then the process dies again:
    # the new agent has its job key again from its join before it restarts anything.
    assert agent.terminate() == 0
    agent.start()
    wait_until(lambda: "app instances to adopt" in agent.output(), timeout=30, what="the adoption")
    for proc in marked_processes(MARK):
        proc.kill()
    wait_until(lambda: len(_lines(out)) == 3, timeout=30, what=f"the restart by the new agent\n{agent.output()}")
    assert _lines(out) == [SECRET[::-1]] * 3
    records = json.loads((agent.data_dir / "apps.json").read_text())
    assert "secret_env" in json.dumps(records)  # kept sealed, to open at the next start
    restarts = lambda: manager.get("/api/apps/vault").json()["instances"][0]["restart_count"]  # noqa: E731
    wait_until(lambda: restarts() >= 2, timeout=20, what="two restarts reported")
    _no_plain_value(manager, agent)


def test_a_process_component_gets_its_secret_and_nothing_else_holds_it(
    tmp_path: Path, fleet: tuple[Manager, Agent]
) -> None:
    manager, agent = fleet
    out = tmp_path / "component-secret.out"
    component = {
        "component_id": "api",
        "type": "process",
        "command": _payload(out, "component").replace("DB_PASSWORD", "API_KEY"),
        "secret_environment_variables": {"API_KEY": SECRET},
    }
    deployed = manager.post("/api/businesses", {"business_name": "shop", "components": [component]})
    assert deployed.status_code == 201, deployed.text
    wait_until(lambda: _lines(out) == [SECRET[::-1]], timeout=30, what=f"the component's start\n{agent.output()}")
    shown = requests.get(f"{manager.url}/api/businesses/{deployed.json()['business_id']}", timeout=10).json()
    assert shown["components"][0]["secret_environment_variables"] == {"API_KEY": "(secret)"}
    assert "secret_env" in (agent.data_dir / "components.json").read_text()
    _no_plain_value(manager, agent)
