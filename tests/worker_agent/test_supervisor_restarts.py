"""The supervisor's restart policy on real task processes: off by default, and when given, backoff then give up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import wait_until
from worker_agent.deployment_tasks.restarts import RestartPolicy, RunState
from worker_agent.deployment_tasks.supervisor import Supervisor


def task(task_id: str, command: str) -> dict[str, Any]:
    return {"task_id": task_id, "deployment_id": "d-1", "name": task_id, "command": command}


def supervised(data_dir: Path, policy: RestartPolicy | None = None) -> tuple[Supervisor, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    options = {} if policy is None else {"restart_policy": policy}
    supervisor = Supervisor(data_dir, "node-1", events.append, poll_interval=0.05, **options)
    supervisor.start_monitor()
    return supervisor, events


def states(events: list[dict[str, Any]], task_id: str) -> list[str]:
    return [e["state"] for e in events if e["task_id"] == task_id]


def test_by_default_a_failed_task_is_settled_at_once_and_never_started_again(data_dir: Path) -> None:
    supervisor, events = supervised(data_dir)
    try:
        supervisor.start(task("t-once", "echo ran >> runs; exit 3"))
        wait_until(lambda: states(events, "t-once")[-1] == "FAILED", what="the failure")
        assert states(events, "t-once") == ["RUNNING", "FAILED"]
        assert (supervisor.task_dir("t-once") / "runs").read_text().count("ran") == 1
    finally:
        supervisor.close()


def test_with_a_restart_policy_a_failing_task_backs_off_restarts_then_fails(data_dir: Path) -> None:
    supervisor, events = supervised(data_dir, RestartPolicy(retries=2, backoff_seconds=0.1))
    try:
        supervisor.start(task("t-flaky", "echo ran >> runs; exit 3"))
        wait_until(lambda: states(events, "t-flaky")[-1] == "FAILED", what="the final failure", timeout=15)
        runs = (supervisor.task_dir("t-flaky") / "runs").read_text().count("ran")
        assert runs == 3  # the first run and two restarts
        # The manager sees RUNNING (again, with each new pid) and one final FAILED with the last exit code.
        assert set(states(events, "t-flaky")[:-1]) == {"RUNNING"} and events[-1]["exit_code"] == 3
        assert len({e["pid"] for e in events if e["state"] == "RUNNING"}) == 3
    finally:
        supervisor.close()


def test_a_stop_during_the_backoff_stops_the_task_without_starting_it_again(data_dir: Path) -> None:
    supervisor, events = supervised(data_dir, RestartPolicy(retries=5, backoff_seconds=30))
    try:
        supervisor.start(task("t-wait", "exit 1"))
        wait_until(lambda: supervisor.run_state("t-wait") is RunState.BACKOFF, what="the backoff")
        supervisor.stop(["t-wait"], grace_seconds=1)
        wait_until(lambda: states(events, "t-wait")[-1] == "STOPPED", what="the stop")
        assert states(events, "t-wait") == ["RUNNING", "STOPPED"]
        assert supervisor.run_state("t-wait") is None
    finally:
        supervisor.close()
