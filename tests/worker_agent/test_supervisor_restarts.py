"""The supervisor's restart policy on real task processes: off by default, and when given, backoff then give up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until
from worker_agent.deployment_tasks.restarts import RestartPolicy, RunState
from worker_agent.deployment_tasks.supervisor import Supervisor

Events = list[dict[str, Any]]


def task(task_id: str, command: str) -> dict[str, Any]:
    return {"task_id": task_id, "deployment_id": "d-1", "name": task_id, "command": command}


def states(events: Events, task_id: str) -> list[str]:
    return [e["state"] for e in events if e["task_id"] == task_id]


@pytest.fixture
def supervised(data_dir: Path) -> Iterator[Callable[..., tuple[Supervisor, Events]]]:
    """Makes a watching Supervisor (with the restart policy given, if any) that keeps its events in a list."""
    made: list[Supervisor] = []

    def make(**options: Any) -> tuple[Supervisor, Events]:
        events: Events = []
        supervisor = Supervisor(data_dir, "node-1", events.append, poll_interval=0.05, **options)
        supervisor.start_monitor()
        made.append(supervisor)
        return supervisor, events

    yield make
    for supervisor in made:
        supervisor.close()


def test_by_default_a_failed_task_is_settled_at_once_and_never_started_again(supervised: Callable) -> None:
    supervisor, events = supervised()
    supervisor.start(task("t-once", "echo ran >> runs; exit 3"))
    wait_until(lambda: states(events, "t-once")[-1] == "FAILED", what="the failure")
    assert states(events, "t-once") == ["RUNNING", "FAILED"]
    assert (supervisor.task_dir("t-once") / "runs").read_text().count("ran") == 1


def test_with_a_restart_policy_a_failing_task_backs_off_restarts_then_fails(supervised: Callable) -> None:
    supervisor, events = supervised(restart_policy=RestartPolicy(retries=2, backoff_seconds=0.1))
    supervisor.start(task("t-flaky", "echo ran >> runs; exit 3"))
    wait_until(lambda: states(events, "t-flaky")[-1] == "FAILED", what="the final failure", timeout=15)
    assert (supervisor.task_dir("t-flaky") / "runs").read_text().count("ran") == 3  # the first run, two restarts
    # The manager sees RUNNING (again, with each new pid) and one final FAILED with the last exit code.
    assert set(states(events, "t-flaky")[:-1]) == {"RUNNING"} and events[-1]["exit_code"] == 3
    assert len({e["pid"] for e in events if e["state"] == "RUNNING"}) == 3


def test_a_stop_during_the_backoff_stops_the_task_without_starting_it_again(supervised: Callable) -> None:
    supervisor, events = supervised(restart_policy=RestartPolicy(retries=5, backoff_seconds=30))
    supervisor.start(task("t-wait", "exit 1"))
    wait_until(lambda: supervisor.run_state("t-wait") is RunState.BACKOFF, what="the backoff")
    supervisor.stop(["t-wait"], grace_seconds=1)
    wait_until(lambda: states(events, "t-wait")[-1] == "STOPPED", what="the stop")
    assert states(events, "t-wait") == ["RUNNING", "STOPPED"]
    assert supervisor.run_state("t-wait") is None
