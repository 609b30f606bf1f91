"""An agent restart: a new Supervisor on the same data dir adopts live tasks and settles ended ones."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import redis as redis_lib

from shared import jobs as job_names
from tests.support import pid_alive, wait_until
from tests.worker_agent.conftest import (
    last_state,
    make_supervisor,
    node_queue,
    run_jobs,
    start_payload,
    task_events,
    watching,
)
from worker_agent import jobs
from worker_agent.deployment_tasks.supervisor import LOST_ERROR


def states(redis: redis_lib.Redis, task_id: str) -> list[str]:
    return [e["state"] for e in task_events(redis, task_id)]


def test_a_running_task_is_adopted_not_restarted_and_can_be_stopped(
    redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    first = make_supervisor(data_dir, node_id, redis_client)
    first.start_monitor()
    first.start(start_payload("t-adopt", "sleep 300"))
    pid = first.record("t-adopt").pid
    first.close()  # the agent goes away; its task does not

    with watching(make_supervisor(data_dir, node_id, redis_client), jobs.register) as second:
        rec = second.record("t-adopt")
        assert (rec.state, rec.pid) == ("RUNNING", pid) and pid_alive(pid)
        assert states(redis_client, "t-adopt") == ["RUNNING", "RUNNING"]  # re-announced after the restart
        assert last_state(redis_client, "t-adopt")["pid"] == pid

        queue = node_queue(redis_client, node_id)
        queue.enqueue(job_names.START_TASK, start_payload("t-adopt", "sleep 300"))  # redelivered start
        run_jobs(redis_client, node_id)
        assert second.record("t-adopt").pid == pid
        assert states(redis_client, "t-adopt") == ["RUNNING", "RUNNING"]

        queue.enqueue(job_names.STOP_TASKS, {"task_ids": ["t-adopt"], "grace_seconds": 5})
        run_jobs(redis_client, node_id)
        wait_until(lambda: states(redis_client, "t-adopt")[-1] == "STOPPED", what="the adopted task to stop")
        assert not pid_alive(pid)
        assert last_state(redis_client, "t-adopt")["exit_code"] == -signal.SIGTERM


def test_a_task_that_ended_while_the_agent_was_down_reports_its_exit_code(
    redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    first = make_supervisor(data_dir, node_id, redis_client)  # never watches: the agent is "down"
    first.start(start_payload("t-fail-down", "exit 4"))
    first.start(start_payload("t-ok-down", "true"))
    first.close()
    for task_id in ("t-fail-down", "t-ok-down"):
        wait_until((data_dir / "tasks" / task_id / "exit-code").exists, what=f"{task_id} to exit")

    second = make_supervisor(data_dir, node_id, redis_client)
    second.recover()

    failed = last_state(redis_client, "t-fail-down")
    assert (failed["state"], failed["exit_code"]) == ("FAILED", 4)
    completed = last_state(redis_client, "t-ok-down")
    assert (completed["state"], completed["exit_code"]) == ("COMPLETED", 0)
    assert second.running_count() == 0


def test_a_task_gone_without_an_exit_code_is_lost(redis_client: redis_lib.Redis, node_id: str, data_dir: Path) -> None:
    first = make_supervisor(data_dir, node_id, redis_client)
    first.start(start_payload("t-lost", "sleep 300"))
    pid = first.record("t-lost").pid
    first.close()
    os.killpg(pid, signal.SIGKILL)  # the wrapper dies too: no exit-code file
    wait_until(lambda: not pid_alive(pid), what="the task to die")

    second = make_supervisor(data_dir, node_id, redis_client)
    second.recover()

    lost = last_state(redis_client, "t-lost")
    assert (lost["state"], lost["error"], lost["exit_code"]) == ("LOST", LOST_ERROR, None)
    assert not (data_dir / "tasks" / "t-lost" / "exit-code").exists()


def test_records_survive_in_the_state_file(redis_client: redis_lib.Redis, node_id: str, data_dir: Path) -> None:
    first = make_supervisor(data_dir, node_id, redis_client)
    first.start(start_payload("t-file", "sleep 300"))
    first.close()

    saved = json.loads((data_dir / "state.json").read_text())["tasks"]["t-file"]

    assert saved["state"] == "RUNNING" and saved["deployment_id"] == "dep-1"
    assert saved["pid"] == first.record("t-file").pid and saved["create_time"] > 0
    assert saved["command"] == "sleep 300" and saved["reported"] is True
    assert not list(data_dir.glob(".*.tmp"))
