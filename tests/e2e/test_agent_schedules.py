"""Agent-side (on_agent) schedules on a real manager and real agents: firing from the agent's own clock while the
manager (and its Redis) is stopped, reported once when it is back; pause and delete reaching the agent; an agent
stopped during a change catching up when it comes back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

HOST = "asched-a"
FIRED = re.compile(r"node \S+ task (\S+): agent schedule (\S+) \((\S+)\) fired for (\S+)")
APPLIED = re.compile(r"agent schedules version (\d+) applied")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent]]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, HOST, 0.5)
    agent.start()
    wait_until(lambda: online(manager), timeout=30, what="the agent online")
    yield manager, agent
    if agent.alive():
        agent.terminate()
    if manager.alive():
        manager.terminate()


def online(manager: Manager) -> bool:
    return any(n["status"] == 0 for n in manager.get("/api/task/node").json()["nodes"])


def firings(agent: Agent, name: str) -> list[str]:
    """The task ids of the agent's firings of schedule ``name``, in order, from its log."""
    return [m.group(1) for m in FIRED.finditer(agent.output()) if m.group(3) == name]


def tasks(manager: Manager, name: str) -> list[dict[str, Any]]:
    answer = manager.get("/api/tasks", params={"name": name, "size": 1000})
    assert answer.status_code == 200, answer.text
    return [t for t in answer.json()["tasks"] if t["created_by"] == f"schedule:{name}"]


def create(manager: Manager, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "command": "echo tick-$TICK", "targets": [HOST], "interval": 1, "timeout": 10}
    payload = {**body, "env": {"TICK": "on"}, "on_agent": True, **extra}
    answer = manager.post("/api/schedules", {key: value for key, value in payload.items() if value is not None})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["on_agent"] is True and created["next_run_at"] is None
    return created


def applied_versions(agent: Agent) -> list[int]:
    return [int(v) for v in APPLIED.findall(agent.output())]


def no_firing_after(agent: Agent, name: str, seconds: float) -> None:
    """Fail if the agent fires ``name`` within ``seconds`` (an interval of 1 s would fire twice)."""
    before = len(firings(agent, name))
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert len(firings(agent, name)) == before, agent.output()[-3000:]
        time.sleep(0.1)


def test_fires_while_the_manager_is_down_and_reports_each_firing_once(stack: tuple[Manager, Agent]) -> None:
    manager, agent = stack
    create(manager, "on-agent-tick")

    # Fired by the agent: every task is one of the agent's firings (the manager's cron runner fires none).
    wait_until(lambda: len(tasks(manager, "on-agent-tick")) >= 2, timeout=15, what="first firings reported")
    first = tasks(manager, "on-agent-tick")[-1]
    done = manager.get(f"/api/tasks/{first['task_id']}", params={"wait": 10}).json()
    assert done["status"] == "completed", done
    assert done["hosts"][0]["stdout"] == "tick-on\n" and done["hosts"][0]["hostname"] == HOST

    # The manager and its Redis stopped: the agent goes on firing from its own clock.
    assert manager.terminate() == 0
    while_down = len(firings(agent, "on-agent-tick"))
    wait_until(lambda: len(firings(agent, "on-agent-tick")) >= while_down + 3, timeout=15, what="firings while down")
    fired_meanwhile = firings(agent, "on-agent-tick")[while_down:]
    manager.start()

    # Back: every firing made meanwhile is reported, completed, and each is one task (no duplicates).
    def all_reported() -> bool:
        shown = {t["task_id"]: t for t in tasks(manager, "on-agent-tick")}
        return all(tid in shown and shown[tid]["status"] == "completed" for tid in fired_meanwhile)

    wait_until(all_reported, timeout=30, what="the firings made while the manager was down")
    shown = [t["task_id"] for t in tasks(manager, "on-agent-tick")]
    assert len(shown) == len(set(shown))
    assert set(shown) <= set(firings(agent, "on-agent-tick"))  # none fired by the manager
    result = manager.get(f"/api/tasks/{fired_meanwhile[0]}").json()
    assert result["hosts"][0]["exit_code"] == 0 and result["hosts"][0]["stdout"] == "tick-on\n"
    # Whatever the agent sent again after the restart (its journal keeps reports until acknowledged): one task a
    # firing, and the schedule's detail shows the last one.
    detail = manager.get("/api/schedules").json()["schedules"][0]
    assert detail["on_agent"] is True and detail["last_task_id"] in set(firings(agent, "on-agent-tick"))


def test_pause_and_delete_reach_the_agent_and_an_offline_agent_catches_up(
    stack: tuple[Manager, Agent], tmp_path: Path
) -> None:
    manager, agent = stack
    schedule = create(manager, "on-agent-change")
    wait_until(lambda: len(firings(agent, "on-agent-change")) >= 2, timeout=15, what="first firings")

    # Pause reaches the agent: once it applied the new set, no firing.
    version = max(applied_versions(agent))
    assert manager.post(f"/api/schedules/{schedule['id']}/pause").json()["paused"] is True
    wait_until(lambda: max(applied_versions(agent)) > version, timeout=10, what="the pause applied")
    no_firing_after(agent, "on-agent-change", 2.5)

    # The detail says which nodes hold the latest set (from their heartbeats).
    def held() -> bool:
        shown = manager.get(f"/api/schedules/{schedule['id']}").json()
        return [(a["hostname"], a["current"]) for a in shown["agents"]] == [(HOST, True)]

    wait_until(held, timeout=10, what="the agent's heartbeat to show the paused set")

    # Resumed while the agent is stopped: back, it catches up (its queue and its join) and fires again.
    assert agent.terminate() == 0
    paused_version = max(applied_versions(agent))
    assert manager.post(f"/api/schedules/{schedule['id']}/resume").json()["paused"] is False
    before = len(firings(agent, "on-agent-change"))
    agent.start()
    wait_until(lambda: max(applied_versions(agent)) > paused_version, timeout=30, what="the resume applied")
    wait_until(lambda: len(firings(agent, "on-agent-change")) >= before + 2, timeout=15, what="firing again")

    # Deleted while the agent is stopped: back, it drops the schedule once it got the set.
    assert agent.terminate() == 0
    resumed_version = max(applied_versions(agent))
    answer = requests.delete(manager.url + f"/api/schedules/{schedule['id']}", timeout=10)
    assert answer.status_code == 200, answer.text
    agent.start()
    wait_until(lambda: max(applied_versions(agent)) > resumed_version, timeout=30, what="the delete applied")
    no_firing_after(agent, "on-agent-change", 2.5)
    held = (agent.data_dir / "agent-schedules.json").read_text()
    assert schedule["id"] not in held
    assert oct((agent.data_dir / "agent-schedules.json").stat().st_mode & 0o777) == "0o600"

    # Every firing the agent made is one task in the history.
    def all_reported() -> bool:
        shown = {t["task_id"] for t in tasks(manager, "on-agent-change")}
        return set(firings(agent, "on-agent-change")) <= shown

    wait_until(all_reported, timeout=30, what="every firing reported")


def test_a_script_schedule_fires_from_the_agents_cache_while_the_manager_is_down(
    stack: tuple[Manager, Agent],
) -> None:
    manager, agent = stack
    body = 'echo "hello $CORRAL_PARAM_WHO args $*"\n'
    params = [{"name": "who", "type": "string", "required": True}]
    registered = manager.post(
        "/api/scripts", {"name": "greet", "version": "1", "interpreter": "sh", "body": body, "params": params}
    )
    assert registered.status_code == 201, registered.text
    secret = {"name": "greet-secret", "version": "1", "interpreter": "sh", "body": body}
    secret["params"] = [*params, {"name": "token", "type": "string", "secret": True}]
    assert manager.post("/api/scripts", secret).status_code == 201
    refused = manager.post(
        "/api/schedules",
        {
            "name": "refused",
            "script": "greet-secret@1",
            "params": {"who": "a", "token": "t"},
            "targets": [HOST],
            "interval": 1,
            "on_agent": True,
        },
    )
    assert refused.status_code == 400 and refused.json()["error"].startswith("params"), refused.text
    create(manager, "on-agent-script", command=None, env={}, script="greet@1", params={"who": "ann"})

    def completed_with_param(task_id: str) -> bool:
        answer = manager.get(f"/api/tasks/{task_id}")
        if answer.status_code == 404:  # not reported yet
            return False
        done = answer.json()
        assert done["status"] in ("running", "completed"), done
        return done["status"] == "completed" and done["hosts"][0]["stdout"] == "hello ann args --who=ann\n"

    wait_until(lambda: tasks(manager, "on-agent-script"), timeout=15, what="a firing reported")
    first = tasks(manager, "on-agent-script")[-1]
    wait_until(lambda: completed_with_param(first["task_id"]), timeout=10, what="the first firing's output")
    assert manager.get(f"/api/tasks/{first['task_id']}").json()["script"]["params"] == {"who": "ann"}

    # The manager and its Redis stopped: the agent runs the script from its cache, firing on.
    assert manager.terminate() == 0
    while_down = len(firings(agent, "on-agent-script"))
    wait_until(lambda: len(firings(agent, "on-agent-script")) >= while_down + 3, timeout=15, what="firings while down")
    fired_meanwhile = firings(agent, "on-agent-script")[while_down:]
    manager.start()
    wait_until(
        lambda: all(completed_with_param(task_id) for task_id in fired_meanwhile),
        timeout=30,
        what="the firings made while the manager was down, each with the script's output",
    )
