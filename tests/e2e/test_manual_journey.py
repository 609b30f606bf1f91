"""The user manual's whole journey with a real manager (gunicorn, private Redis) and three real agents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import pid_alive, wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5  # offline after 3 intervals = 1.5 s
RESOURCES = re.compile(r"^cpu_usage_percent:\d+,memory_usage_percent:\d+$")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agents = {name: Agent(tmp_path, env, manager, name, INTERVAL) for name in ("node-a", "node-b", "node-c")}
    for agent in agents.values():
        agent.start()
    yield {"manager": manager, "agents": agents, "env": env, "tmp": tmp_path}
    pids: list[int] = []
    for agent in agents.values():
        if agent.alive():
            agent.terminate()
    if manager.alive():
        manager.terminate()
    for path in tmp_path.glob("agent-*/state.json"):
        pids += [int(p) for p in re.findall(r'"pid":\s*(\d+)', path.read_text())]
    for pid in pids:  # never leave a test's sleepers behind, whatever failed
        try:
            for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                proc.kill()
        except psutil.Error:
            pass


def nodes_by_host(manager: Manager) -> dict[str, dict[str, Any]]:
    answer = manager.get("/api/task/node")
    assert answer.status_code == 200, answer.text
    return {n["hostname"]: n for n in answer.json()["nodes"]}


def deployment(manager: Manager, dep_id: str) -> dict[str, Any]:
    answer = manager.get(f"/deployments/{dep_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def all_tasks(manager: Manager, dep_id: str, state: str) -> dict[str, Any] | None:
    dep = deployment(manager, dep_id)
    return dep if all(t["state"] == state for t in dep["tasks"]) else None


def tree(pid: int) -> list[int]:
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def test_manual_journey(stack: dict[str, Any]) -> None:
    manager: Manager = stack["manager"]
    agents: dict[str, Agent] = stack["agents"]

    # §4.2 step 3: the agents are listed, online, with the manual's resource string.
    nodes = wait_until(
        lambda: (n := nodes_by_host(manager)) and len(n) == 3 and all(x["status"] == 0 for x in n.values()) and n,
        timeout=30,
        what="three online nodes",
    )
    for node in nodes.values():
        assert RESOURCES.match(node["resources"]), node
        assert {"ip", "status", "resources", "id", "hostname", "last_heartbeat"} <= node.keys()

    # §5.3.2: a template with two groups, one task pinned with the manual's host:path form.
    template = {
        "name": "我的数据处理任务",
        "task_groups": [
            {
                "tasks": [
                    {"name": "数据清洗器", "config": {"command": "sleep 301"}},
                    {"name": "数据分析器", "config": {"command": "sh -c 'sleep 302 & sleep 303 & wait'"}},
                ]
            },
            {"tasks": [{"name": "pinned", "config": {"command": "node-c:/bin/sleep 304"}}]},
        ],
    }
    created = manager.post("/api/task/task_group", template)
    assert created.status_code == 200 and created.json() == {"status": "success"}, created.text
    assert manager.post("/api/task/task_group", template).status_code == 409

    queried = manager.post("/api/task/query", {"name": "我的数据处理任务"}).json()
    assert queried["name"] == "我的数据处理任务"
    pinned = queried["task_groups"][1]["tasks"][0]["config"]
    assert pinned["command"] == "/bin/sleep 304" and pinned["host"] == "node-c"
    assert queried["task_groups"][0]["tasks"][1]["config"]["command"] == "sh -c 'sleep 302 & sleep 303 & wait'"

    # §5.3.3: deploy; every task runs as a real process; groups on different nodes, the pin honoured.
    dep_id = manager.post("/api/task/task_group/deploy", {"name": "我的数据处理任务"}).json()["id"]
    dep = wait_until(lambda: all_tasks(manager, dep_id, "RUNNING"), timeout=20, what="tasks running")
    status = manager.post("/api/task/task_group/query", {"id": dep_id}).json()
    assert status["id"] == dep_id and status["status"] == 0
    by_name = {t["name"]: t for t in dep["tasks"]}
    assert by_name["pinned"]["node"]["hostname"] == "node-c"
    group0_node = by_name["数据清洗器"]["node"]["hostname"]
    assert by_name["数据分析器"]["node"]["hostname"] == group0_node
    for task in dep["tasks"]:
        assert pid_alive(task["pid"]), task
    analyser_tree = wait_until(lambda: (t := tree(by_name["数据分析器"]["pid"])) and len(t) >= 3 and t, what="tree")

    # The agent of group 0 dies hard: its node goes offline, its processes live on.
    victim = agents[group0_node]
    victim.kill()
    wait_until(lambda: nodes_by_host(manager)[group0_node]["status"] == 1, timeout=10, what="node offline")
    assert nodes_by_host(manager)[group0_node]["resources"] == "cpu_usage_percent:0,memory_usage_percent:0"
    assert all(pid_alive(p) for p in analyser_tree)

    # Nothing new is placed on an offline node.
    manager.post(
        "/api/task/task_group",
        {"name": "spread", "task_groups": [{"tasks": [{"name": "s", "config": {"command": "sleep 305"}}]}] * 4},
    )
    spread_id = manager.post("/api/task/task_group/deploy", {"name": "spread"}).json()["id"]
    spread = wait_until(lambda: all_tasks(manager, spread_id, "RUNNING"), timeout=20, what="spread running")
    assert group0_node not in {t["node"]["hostname"] for t in spread["tasks"]}

    # The agent comes back on the same data dir: node online again, processes re-adopted, not restarted.
    before = {t["id"]: t["pid"] for t in deployment(manager, dep_id)["tasks"]}
    victim.start()
    wait_until(lambda: nodes_by_host(manager)[group0_node]["status"] == 0, timeout=20, what="node back online")
    after = deployment(manager, dep_id)
    assert {t["id"]: t["pid"] for t in after["tasks"]} == before
    assert all(t["state"] == "RUNNING" for t in after["tasks"])
    sleepers = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[:2] == ["sleep", "301"]]
    assert len(sleepers) == 1, "a re-adopted task must never be started twice"

    # SIGTERM is a clean stop of the agent alone: exit 0, its task lives on and is re-adopted.
    pinned_pid = by_name["pinned"]["pid"]
    assert agents["node-c"].terminate() == 0, agents["node-c"].output()
    assert "shutting down" in agents["node-c"].output()
    assert pid_alive(pinned_pid)
    agents["node-c"].start()
    wait_until(lambda: nodes_by_host(manager)["node-c"]["status"] == 0, timeout=20, what="node-c back")
    assert pid_alive(pinned_pid)

    # Stop: status 1 at once, then every process tree on every node is gone.
    assert manager.post("/api/task/task_group/stop", {"id": dep_id}).json() == {"id": dep_id}
    assert manager.post("/api/task/task_group/query", {"id": dep_id}).json()["status"] == 1
    wait_until(lambda: all_tasks(manager, dep_id, "STOPPED"), timeout=20, what="tasks stopped")
    wait_until(lambda: not any(pid_alive(p) for p in analyser_tree), timeout=10, what="tree gone")
    assert not any(pid_alive(p) for p in before.values())
    manager.post("/api/task/task_group/stop", {"id": spread_id})

    # A task that exits non-zero shows its exit code (§5.6).
    manager.post(
        "/api/task/task_group",
        {"name": "broken", "task_groups": [{"tasks": [{"name": "b", "config": {"command": "exit 3"}}]}]},
    )
    broken_id = manager.post("/api/task/task_group/deploy", {"name": "broken"}).json()["id"]
    broken = wait_until(lambda: all_tasks(manager, broken_id, "FAILED"), timeout=20, what="broken task failed")
    assert broken["tasks"][0]["exit_code"] == 3
    assert broken["state"] == "FAILED"
    assert manager.post("/api/task/task_group/query", {"id": broken_id}).json()["status"] == 1

    # The manager stops cleanly and comes back with every record (§5.6).
    assert manager.terminate() == 0
    assert "shutting down" in manager.output()
    manager.start()
    again = manager.post("/api/task/query", {"name": "我的数据处理任务"})
    assert again.status_code == 200 and again.json() == queried
    assert {t["id"]: t["state"] for t in deployment(manager, dep_id)["tasks"]} == {i: "STOPPED" for i in before}
    assert deployment(manager, broken_id)["tasks"][0]["exit_code"] == 3
    wait_until(
        lambda: len(n := nodes_by_host(manager)) == 3 and all(x["status"] == 0 for x in n.values()),
        timeout=30,
        what="agents reconnected to the restarted manager",
    )

    # The agents stop cleanly too.
    for agent in agents.values():
        assert agent.terminate() == 0, agent.output()
