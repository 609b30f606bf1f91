"""Fault: the agent is frozen (SIGSTOP) for two offline windows while its command runs, then thawed
(SIGCONT). The node reads offline (status 1, a node.offline audit entry) while frozen and online again after;
the command, which ran on through the freeze in its own session, was started once and only once, and its
host ends final ("node went offline": the manager's verdict once the node was lost) and never changes again,
not even when the thawed agent reports the command's own end."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager_api.services.fleet_tasks.upkeep import NODE_WENT_OFFLINE
from tests.e2e.harness import Agent, Manager
from tests.faults.faults_support import (
    audit,
    create_task,
    host_running,
    manager_and_agent,
    nodes,
    online,
    record_lines,
    recording_command,
    task,
    wait_final,
)
from tests.support import pid_alive, wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
WINDOW = 3 * INTERVAL  # the manager's default: offline after 3 intervals without a heartbeat
HOSTNAME = "frozen-1"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent, list[int]]]:
    with manager_and_agent(tmp_path, HOSTNAME, INTERVAL) as (manager, agent, leftovers):
        yield manager, agent, leftovers


def test_a_frozen_agent_goes_offline_comes_back_and_runs_nothing_twice(
    stack: tuple[Manager, Agent, list[int]], tmp_path: Path
) -> None:
    manager, agent, leftovers = stack
    wait_until(lambda: online(manager, HOSTNAME), timeout=30, what="the node online")
    node_id = nodes(manager)[HOSTNAME]["id"]
    record, go = tmp_path / "cmd.record", tmp_path / "go"
    task_id = create_task(manager, recording_command(record, go), [HOSTNAME], timeout=120)
    wait_until(lambda: record_lines(record) and host_running(manager, task_id), timeout=20, what="the command running")
    [pid] = record_lines(record)
    leftovers.append(pid)

    os.kill(agent.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    wait_until(lambda: not online(manager, HOSTNAME), timeout=WINDOW + 10, what="the frozen node offline")
    went_offline = time.monotonic() - frozen
    wait_until(
        lambda: [e for e in audit(manager, "node.offline") if e["target"] == node_id],
        timeout=10,
        what="a node.offline audit entry",
    )
    lost = wait_final(manager, task_id, timeout=10)
    assert (lost["hosts"][0]["status"], lost["hosts"][0]["error_message"]) == ("failed", NODE_WENT_OFFLINE), lost
    # Frozen for two windows in all: the fault's duration, not a wait for anything.
    wait_until(lambda: time.monotonic() - frozen >= 2 * WINDOW, timeout=2 * WINDOW + 5, what="two windows")
    assert pid_alive(pid), "the command did not survive its agent's freeze"

    os.kill(agent.pid, signal.SIGCONT)
    thawed = time.monotonic()
    wait_until(lambda: online(manager, HOSTNAME), timeout=WINDOW + 10, what=f"back online\n{agent.output()[-3000:]}")
    back = time.monotonic() - thawed
    offline_at = max(e["at"] for e in audit(manager, "node.offline") if e["target"] == node_id)
    wait_until(
        lambda: [e for e in audit(manager, "node.online") if e["target"] == node_id and e["at"] > offline_at],
        timeout=10,
        what="a node.online audit entry after the offline one",
    )

    # The command ends now, under the thawed agent, which reports it: the final host must not change.
    go.touch()
    wait_until(lambda: record_lines(record, "end"), timeout=10, what="the command ended")
    wait_until(
        lambda: f"task {task_id}: command succeeded" in agent.output(), timeout=10, what="the agent's own report"
    )
    after = manager.post("/api/tasks?wait=30", {"name": "after", "command": "echo back", "targets": [HOSTNAME]})
    assert after.status_code == 201 and after.json()["hosts"][0]["status"] == "succeeded", after.text
    assert task(manager, task_id)["hosts"][0] == lost["hosts"][0], "a final host changed"
    assert record_lines(record) == [pid], f"started twice: {record.read_text()}"
    print(
        f"\nfrozen {thawed - frozen:.1f} s (window {WINDOW} s): offline after {went_offline:.2f} s, online "
        f"{back:.2f} s after SIGCONT; command started once, host final '{NODE_WENT_OFFLINE}' and unchanged"
    )
