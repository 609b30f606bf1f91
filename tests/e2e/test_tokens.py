"""An operator token on a real fleet (issue 15): its command runs on the real agent of its node, and the same
token is refused a node outside its query and a command outside its allowlist, with nothing sent to any agent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

ADMIN = "e2e-bootstrap-admin-token"
HOSTS = ("tok-a", "tok-b")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    tmp = tmp_path_factory.mktemp("tokens")
    env = isolated_env(tmp)
    manager = Manager(tmp, env, ["--api-token", ADMIN])
    manager.start()
    agents = [Agent(tmp, env, manager, name, 0.5) for name in HOSTS]
    for agent in agents:
        agent.start()
    try:
        wait_until(lambda: len(online(manager)) == len(HOSTS), timeout=30, what="two agents online")
        yield manager
    finally:
        for agent in agents:
            agent.terminate()
        manager.terminate()


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def online(manager: Manager) -> dict[str, str]:
    nodes = manager.get("/api/task/node", headers=headers(ADMIN)).json()["nodes"]
    return {n["hostname"]: n["id"] for n in nodes if n["status"] == 0}


def run(manager: Manager, token: str, command: str, targets: list[str]) -> requests.Response:
    body = {"name": "e2e-token", "command": command, "targets": targets, "timeout": 20}
    return requests.post(f"{manager.url}/api/tasks?wait=20", json=body, headers=headers(token), timeout=40)


def test_an_operator_runs_its_command_on_its_node_and_is_refused_elsewhere(fleet: Manager) -> None:
    body: dict[str, Any] = {"name": "ops-a", "role": "operator", "nodeQuery": "hostname:tok-a", "commands": ["echo *"]}
    created = fleet.post("/api/tokens", body, headers=headers(ADMIN))
    assert created.status_code == 201, created.text
    operator = created.json()["token"]

    done = run(fleet, operator, "echo scoped-hello", ["tok-a"])
    assert done.status_code == 201, done.text
    [host] = done.json()["hosts"]
    assert (host["hostname"], host["status"], host["stdout"].strip()) == ("tok-a", "succeeded", "scoped-hello")

    other = run(fleet, operator, "echo scoped-hello", ["tok-b"])
    assert other.status_code == 403 and other.json()["nodes"] == [online(fleet)["tok-b"]]
    everywhere = run(fleet, operator, "echo scoped-hello", ["*"])
    assert everywhere.status_code == 403 and everywhere.json()["nodes"] == [online(fleet)["tok-b"]]
    outside = run(fleet, operator, "id", ["tok-a"])
    assert outside.status_code == 403 and "'id'" in outside.json()["error"]

    tasks = fleet.get("/api/tasks", headers=headers(ADMIN)).json()["tasks"]
    assert len(tasks) == 1  # the refused ones never became tasks
    audit = fleet.get("/api/audit?action=task.create", headers=headers(ADMIN)).json()["entries"]
    assert [entry["actor"] for entry in audit] == ["token:ops-a@127.0.0.1"]
