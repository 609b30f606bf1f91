"""A schedule on a real manager (two gunicorn workers) and a real agent: ticks, pause, restart, resume."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

NAME = "every-second"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent]]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, "sched-a", 0.5)
    agent.start()
    wait_until(
        lambda: [n for n in manager.get("/api/task/node").json()["nodes"] if n["status"] == 0],
        timeout=30,
        what="the agent online",
    )
    yield manager, agent
    if agent.alive():
        agent.terminate()
    if manager.alive():
        manager.terminate()


def fired(manager: Manager) -> list[dict[str, Any]]:
    """The schedule's tasks, newest first."""
    answer = manager.get("/api/tasks", params={"name": NAME, "size": 1000})
    assert answer.status_code == 200, answer.text
    return [t for t in answer.json()["tasks"] if t["created_by"] == f"schedule:{NAME}"]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def stays(manager: Manager, count: int, seconds: float) -> None:
    """Fail if the schedule fires any task within ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert len(fired(manager)) == count
        time.sleep(0.1)


def test_interval_schedule_on_a_real_agent(stack: tuple[Manager, Agent]) -> None:
    manager, _agent = stack
    response = manager.post(
        "/api/schedules",
        {
            "name": NAME,
            "command": "echo tick-$TICK",
            "targets": ["sched-a"],
            "interval": 1,
            "timeout": 10,
            "env": {"TICK": "on"},
        },
    )
    assert response.status_code == 201, response.text
    schedule = response.json()
    created = parse(schedule["created_at"])

    # Exactly one task per elapsed tick, whatever gunicorn worker answered the POST.
    wait_until(lambda: fired(manager), timeout=5, what="first firing")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        ticks = math.floor((datetime.now(UTC) - created).total_seconds())
        assert abs(len(fired(manager)) - ticks) <= 1, (len(fired(manager)), ticks)
        time.sleep(0.2)

    # Every firing is an ordinary task with its own result from the agent.
    oldest = fired(manager)[-1]
    done = manager.get(f"/api/tasks/{oldest['task_id']}", params={"wait": 10}).json()
    assert done["status"] == "completed" and done["hosts"][0]["stdout"] == "tick-on\n"
    shown = manager.get(f"/api/schedules/{schedule['id']}").json()
    assert shown["last_task_id"] in shown["recent_task_ids"] and oldest["task_id"] in shown["recent_task_ids"]

    # Paused: no new task, before and after a manager restart.
    assert manager.post(f"/api/schedules/{schedule['id']}/pause").json()["paused"] is True
    # A firing already past its check when the pause landed may still finish (one task at most); running
    # on, two more ticks would come within 2.5 s.
    before = len(fired(manager))
    until = time.monotonic() + 2.5
    while time.monotonic() < until:
        assert len(fired(manager)) - before <= 1
        time.sleep(0.1)
    count = len(fired(manager))
    assert manager.terminate() == 0
    manager.start()
    shown = manager.get(f"/api/schedules/{schedule['id']}").json()
    assert shown["paused"] is True and shown["next_run_at"] is None and shown["name"] == NAME
    stays(manager, count, 1.5)

    # Resumed on the restarted manager: the definition came back from its database.
    resumed = manager.post(f"/api/schedules/{schedule['id']}/resume").json()
    assert parse(resumed["next_run_at"]) > datetime.now(UTC)
    newer = wait_until(lambda: len(fired(manager)) >= count + 2 and fired(manager), timeout=10, what="new firings")
    result = manager.get(f"/api/tasks/{newer[1]['task_id']}", params={"wait": 10}).json()
    assert result["status"] == "completed" and result["hosts"][0]["exit_code"] == 0
    entries = manager.get("/api/audit", params={"limit": 1000}).json()["entries"]
    actions = [e["action"] for e in entries if e["target"] == schedule["id"]]
    assert sorted(actions) == ["schedule.create", "schedule.pause", "schedule.resume"]


def test_an_interval_schedule_runs_a_registered_script_with_its_params(stack: tuple[Manager, Agent]) -> None:
    manager, _agent = stack
    body = 'echo "hello $CORRAL_PARAM_WHO x$CORRAL_PARAM_COUNT args $*"\necho "token-length ${#CORRAL_PARAM_TOKEN}"\n'
    params = [
        {"name": "who", "type": "string", "required": True},
        {"name": "count", "type": "int", "default": 2},
        {"name": "token", "type": "string", "secret": True},
    ]
    registered = manager.post(
        "/api/scripts", {"name": "greet", "version": "2", "interpreter": "sh", "body": body, "params": params}
    )
    assert registered.status_code == 201, registered.text
    response = manager.post(
        "/api/schedules",
        {
            "name": "greet-every-second",
            "script": "greet@2",
            "params": {"who": "ann", "count": 3, "token": "s3cret-never-shown"},
            "targets": ["sched-a"],
            "interval": 1,
            "timeout": 10,
        },
    )
    assert response.status_code == 201, response.text
    schedule = response.json()
    assert schedule["script"] == "greet@2" and schedule["params"]["token"] == "(secret)"

    def greeted() -> list[dict[str, Any]]:
        answer = manager.get("/api/tasks", params={"name": "greet-every-second", "size": 1000})
        return [t for t in answer.json()["tasks"] if t["created_by"] == "schedule:greet-every-second"]

    first = wait_until(lambda: greeted(), timeout=10, what="the script schedule's first firing")[-1]
    done = manager.get(f"/api/tasks/{first['task_id']}", params={"wait": 10}).json()
    assert done["status"] == "completed", done
    assert done["command"] == "script:greet@2" and done["script"]["secret_params"] == ["token"]
    assert done["hosts"][0]["stdout"] == "hello ann x3 args --who=ann --count=3\ntoken-length 18\n"
    shown = manager.get(f"/api/schedules/{schedule['id']}").json()
    assert "s3cret-never-shown" not in str(shown) + str(done)
    # The script stays while the schedule names it.
    assert requests.delete(f"{manager.url}/api/scripts/greet/2", timeout=10).status_code == 409
