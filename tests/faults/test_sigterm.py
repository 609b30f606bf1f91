"""Fault: SIGTERM (an orderly stop: systemctl stop, a deploy of a new version) to the manager and to the agent,
each while work is in flight. Each exits 0 within a bound, and nothing is lost: after the restart every write
answered 2xx is there, every task ends with its true outcome (the real exit code of a command that ended
while its agent or manager was away, or after the agent came back), and no node is judged offline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Agent, Manager
from tests.faults.faults_support import (
    OfflineWatcher,
    Writers,
    audit,
    create_task,
    host_running,
    integrity_check,
    manager_and_agent,
    nodes,
    online,
    record_lines,
    recording_command,
    wait_final,
)
from tests.support import pid_alive, wait_until
from worker_agent.fleet_commands.recovery import RESTARTED_ERROR

pytestmark = pytest.mark.e2e

INTERVAL = 1.0
WINDOW = 3 * INTERVAL  # the manager's default: offline after 3 intervals without a heartbeat
MANAGER_STOP_BOUND = 20.0  # gunicorn's graceful timeout is 10 s
AGENT_STOP_BOUND = 10.0
WRITERS = 8
WRITES = 40
HOSTNAME = "termed-1"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent, list[int]]]:
    with manager_and_agent(tmp_path, HOSTNAME, INTERVAL) as (manager, agent, leftovers):
        wait_until(lambda: online(manager, HOSTNAME), timeout=30, what="the node online")
        yield manager, agent, leftovers


def offline_entries(manager: Manager, hostname: str) -> list[dict[str, Any]]:
    node_id = nodes(manager)[hostname]["id"]
    return [e for e in audit(manager, "node.offline") if e["target"] == node_id]


def test_a_manager_stopped_mid_storm_exits_0_and_loses_nothing(
    stack: tuple[Manager, Agent, list[int]], tmp_path: Path
) -> None:
    manager, agent, leftovers = stack
    record, go = tmp_path / "cmd.record", tmp_path / "go"
    task_id = create_task(manager, recording_command(record, go, exit_code=5), [HOSTNAME])
    wait_until(lambda: record_lines(record) and host_running(manager, task_id), timeout=20, what="command running")
    leftovers.extend(record_lines(record))

    with OfflineWatcher(manager, {HOSTNAME}) as watcher:
        with Writers(manager, WRITERS) as writers:
            wait_until(lambda: writers.written() >= WRITES, timeout=30, what="writes under way")
            at_stop = writers.written()
            asked = time.monotonic()
            code = manager.terminate(timeout=MANAGER_STOP_BOUND)  # SIGTERM, and the wait is the bound
            stopped = time.monotonic() - asked
            # The command ends while the manager (and its Redis) is away: the agent must hold its report.
            go.touch()
            wait_until(lambda: record_lines(record, "end"), timeout=10, what="the command ended")
            manager.start()
            after, back = writers.written(), time.monotonic()
            wait_until(
                lambda: writers.written() >= after + WRITES and time.monotonic() - back >= 2 * WINDOW,
                timeout=30,
                what="writes after the restart",
            )

    assert code == 0, f"the manager exited {code} on SIGTERM\n{manager.output()[-3000:]}"
    done = wait_final(manager, task_id, timeout=20, logs=f"\n{agent.output()[-3000:]}")
    [host] = done["hosts"]
    assert (host["status"], host["exit_code"]) == ("failed", 5), host  # the command's own outcome
    assert record_lines(record) == record_lines(record, "end"), "started twice"
    assert integrity_check(manager.db_path) == "ok"
    writers.check_all_present(manager)
    assert not offline_entries(manager, HOSTNAME), "the live agent was judged offline"
    assert not watcher.offline, f"the live agent read offline at {watcher.offline[:5]}"
    print(
        f"\nmanager SIGTERM after {at_stop} writes: exit {code} in {stopped:.2f} s; 2xx: {len(writers.templates())} "
        f"templates, {len(writers.tasks())} tasks, all present; command ended while it was down: exit code 5 "
        f"reported; node reads {watcher.reads}, 0 offline"
    )


def deploy(manager: Manager, name: str, command: str) -> str:
    body = {"name": name, "task_groups": [{"tasks": [{"name": "t", "config": {"command": command}}]}]}
    answer = manager.post("/api/task/task_group", body)
    assert answer.status_code in (200, 201), answer.text
    answer = manager.post("/api/task/task_group/deploy", {"name": name})
    assert answer.status_code in (200, 201), answer.text
    deployment_id: str = answer.json()["id"]
    return deployment_id


def deployed_task(manager: Manager, deployment_id: str) -> dict[str, Any]:
    answer = manager.get(f"/api/deployments/{deployment_id}")
    assert answer.status_code == 200, answer.text
    [found] = answer.json()["tasks"]
    result: dict[str, Any] = found
    return result


def deployed_task_ended(manager: Manager, deployment_id: str) -> dict[str, Any] | None:
    """The deployment's task once it ended (neither pending nor running), else None."""
    found = deployed_task(manager, deployment_id)
    return found if found["state"] not in ("PENDING", "RUNNING") else None


def test_an_agent_stopped_mid_task_exits_0_and_every_task_ends_true(
    stack: tuple[Manager, Agent, list[int]], tmp_path: Path
) -> None:
    manager, agent, leftovers = stack
    files = {name: (tmp_path / f"{name}.record", tmp_path / f"{name}.go") for name in ("early", "late", "fleet")}
    # Two deployment tasks (supervised processes that outlive the agent): one ends while the agent is down
    # with exit code 3, one after it is back with 0. One fleet command, running across the stop.
    early = deploy(manager, "sig-early", recording_command(*files["early"], exit_code=3))
    late = deploy(manager, "sig-late", recording_command(*files["late"], exit_code=0))
    fleet = create_task(manager, recording_command(*files["fleet"]), [HOSTNAME])
    wait_until(
        lambda: (
            all(deployed_task(manager, d)["state"] == "RUNNING" for d in (early, late))
            and host_running(manager, fleet)
            and all(record_lines(record) for record, _ in files.values())
        ),
        timeout=20,
        what="every task running",
    )
    for record, _ in files.values():
        leftovers.extend(record_lines(record))
    late_pid = deployed_task(manager, late)["pid"]

    asked = time.monotonic()
    code = agent.terminate(timeout=AGENT_STOP_BOUND)
    stopped = time.monotonic() - asked
    assert code == 0, f"the agent exited {code} on SIGTERM\n{agent.output()[-3000:]}"
    assert all(pid_alive(record_lines(record)[0]) for record, _ in files.values()), "work died with its agent"
    files["early"][1].touch()
    wait_until(lambda: record_lines(files["early"][0], "end"), timeout=10, what="the early task ended")
    agent.start()
    down = time.monotonic() - asked

    ended = wait_until(lambda: deployed_task_ended(manager, early), timeout=20, what="the early task's end")
    assert ended is not None
    assert (ended["state"], ended["exit_code"]) == ("FAILED", 3), ended  # its real exit code, not LOST
    fleet_done = wait_final(manager, fleet, timeout=20)
    assert (fleet_done["hosts"][0]["status"], fleet_done["hosts"][0]["error_message"]) == (
        "failed",
        RESTARTED_ERROR,
    ), fleet_done
    wait_until(lambda: not pid_alive(record_lines(files["fleet"][0])[0]), timeout=10, what="the fleet command killed")

    # The late task was adopted (same pid), and its end after the restart is reported with its exit code.
    assert deployed_task(manager, late)["state"] == "RUNNING" and deployed_task(manager, late)["pid"] == late_pid
    files["late"][1].touch()
    finished = wait_until(lambda: deployed_task_ended(manager, late), timeout=20, what="the late task's end")
    assert finished is not None
    assert (finished["state"], finished["exit_code"]) == ("COMPLETED", 0), finished
    for name, (record, _) in files.items():
        assert len(record_lines(record)) == 1, f"{name} started twice: {record.read_text()}"
    assert not offline_entries(manager, HOSTNAME), "the agent was judged offline across a quick restart"
    print(
        f"\nagent SIGTERM: exit {code} in {stopped:.2f} s, restarted {down:.2f} s after it (window {WINDOW} s); "
        f"ended while down: FAILED exit 3; ended after: COMPLETED exit 0 (same pid {late_pid}); fleet command: "
        f"failed '{RESTARTED_ERROR}'; every command started once"
    )
