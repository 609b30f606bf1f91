"""Fault: jobs wait on a node past their task's deadline (a frozen agent, a backlog, a worker that came back
late). The manager gives up on them at the deadline; the agent, when it takes them, must not run them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SLACK = 1.0  # CORRAL_TASK_DEADLINE_SLACK_SECONDS: the manager gives up one second after the deadline
TASKS = 5


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent]]:
    env = isolated_env(tmp_path)
    env["CORRAL_TASK_DEADLINE_SLACK_SECONDS"] = str(SLACK)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, "frozen-1", 2.0)  # offline after 6 s: the tasks find it online
    agent.start()
    try:
        yield manager, agent
    finally:
        if agent.alive():
            os.kill(agent.pid, signal.SIGCONT)
            agent.terminate()
        if manager.alive():
            manager.terminate()


def test_nothing_runs_after_the_manager_gave_up_on_it(stack: tuple[Manager, Agent], tmp_path: Path) -> None:
    manager, agent = stack
    wait_until(
        lambda: manager.get("/api/task/node").json()["nodes"][0]["status"] == 0, timeout=30, what="the node online"
    )
    os.kill(agent.pid, signal.SIGSTOP)  # its queue fills; nothing takes the jobs
    markers = [tmp_path / f"ran-{i}" for i in range(TASKS)]
    task_ids = []
    for marker in markers:
        answer = manager.post(
            "/api/tasks", {"name": "late", "command": f"touch {marker}", "targets": ["*"], "timeout": 1}
        )
        assert answer.status_code == 201, answer.text
        task_ids.append(answer.json()["task_id"])

    def final(task_id: str) -> dict | None:
        task = manager.get(f"/api/tasks/{task_id}").json()
        return task if task["status"] in ("failed", "completed") else None

    finals = [wait_until(lambda t=t: final(t), timeout=30, what=f"task {t} final") for t in task_ids]
    assert [t["hosts"][0]["status"] for t in finals] == ["failed"] * TASKS, finals

    # The agent wakes up with every one of those jobs still in its queue.
    woke = time.monotonic()
    os.kill(agent.pid, signal.SIGCONT)
    after = manager.post("/api/tasks?wait=60", {"name": "after", "command": "echo fresh", "targets": ["*"]})
    assert after.status_code in (200, 201) and after.json()["hosts"][0]["status"] == "succeeded", after.text
    # FIFO: the queue reached this task, so the late jobs were taken (and refused) before it.
    assert not [m.name for m in markers if m.exists()], "a command ran after its task was final"
    assert agent.output().count("expired: it reached this node after its deadline") == TASKS, agent.output()[-3000:]
    for task_id, before in zip(task_ids, finals, strict=True):
        again = manager.get(f"/api/tasks/{task_id}").json()
        assert again["hosts"][0]["status"] == before["hosts"][0]["status"], "a final host changed"
    print(f"\n{TASKS} late jobs refused by the agent within {time.monotonic() - woke:.2f} s of waking")
