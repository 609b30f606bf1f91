"""Tasks started and stopped through real jobs on the node queue, as real process trees."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
import redis as redis_lib

from shared import jobs as job_names
from tests.support import pid_alive, wait_until
from tests.worker_agent.conftest import last_state, node_queue, run_jobs, start_payload, task_events
from worker_agent.deployment_tasks.supervisor import UNKNOWN_TASK_ERROR, Supervisor


def start_via_job(redis: redis_lib.Redis, node_id: str, task_id: str, command: str, **extra: object) -> None:
    node_queue(redis, node_id).enqueue(job_names.START_TASK, start_payload(task_id, command, **extra))
    run_jobs(redis, node_id)


def stop_via_job(
    redis: redis_lib.Redis, node_id: str, task_ids: list[str], grace: float, deployment_id: str = ""
) -> None:
    body = {"task_ids": task_ids, "grace_seconds": grace, "deployment_id": deployment_id}
    node_queue(redis, node_id).enqueue(job_names.STOP_TASKS, body)
    run_jobs(redis, node_id)


def ended_event(redis: redis_lib.Redis, task_id: str, timeout: float = 10.0) -> dict:
    def ended() -> dict | None:
        event = last_state(redis, task_id)
        return event if event and event["state"] != "RUNNING" else None

    return wait_until(ended, timeout=timeout, what=f"end of task {task_id}")


def tree_pids(pid: int) -> list[int]:
    return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]


def tree_of_at_least(pid: int, count: int) -> list[int] | None:
    pids = tree_pids(pid)
    return pids if len(pids) >= count else None


def processes_of_task(task_id: str, cmdline: list[str]) -> list[psutil.Process]:
    """Processes running ``cmdline`` with CORRAL_TASK_ID=task_id in their environment."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"], ad_value=None):
        if proc.info["cmdline"] == cmdline and (proc.info["environ"] or {}).get("CORRAL_TASK_ID") == task_id:
            found.append(proc)
    return found


def test_a_started_task_runs_as_a_real_process_and_reports_running(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    start_via_job(redis_client, node_id, "t-run", "sleep 30")

    [event] = task_events(redis_client, "t-run")
    assert event["state"] == "RUNNING"
    assert (event["node_id"], event["deployment_id"]) == (node_id, "dep-1")
    assert event["pid"] and pid_alive(event["pid"])
    assert event["started_at"] and abs(event["started_at"] - time.time()) < 10
    assert supervisor.running_count() == 1


def test_exit_codes_become_completed_and_failed(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    start_via_job(redis_client, node_id, "t-ok", "true")
    start_via_job(redis_client, node_id, "t-bad", "exit 3")
    start_via_job(redis_client, node_id, "t-missing", "no-such-command-anywhere")

    ok, bad, missing = (ended_event(redis_client, t) for t in ("t-ok", "t-bad", "t-missing"))
    assert (ok["state"], ok["exit_code"]) == ("COMPLETED", 0)
    assert (bad["state"], bad["exit_code"]) == ("FAILED", 3)
    assert (missing["state"], missing["exit_code"]) == ("FAILED", 127)
    # Why, in words: the exit code and the tail of stderr, as business components say it.
    assert missing["error"].startswith("exited with code 127; stderr: ")
    assert "no-such-command-anywhere" in missing["error"] and "not found" in missing["error"]
    assert bad["error"] == "exited with code 3" and ok["error"] is None
    assert [e["state"] for e in task_events(redis_client, "t-bad")] == ["RUNNING", "FAILED"]
    assert supervisor.running_count() == 0


def test_output_and_environment_of_a_task(
    redis_client: redis_lib.Redis,
    node_id: str,
    supervisor: Supervisor,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_JOIN_TOKEN", "secret-join-token")
    command = 'echo "$CORRAL_TASK_ID $CORRAL_DEPLOYMENT_ID $GREETING ${CORRAL_JOIN_TOKEN:-hidden}"; echo oops >&2'
    start_via_job(redis_client, node_id, "t-out", command, env={"GREETING": "hello world"})

    assert ended_event(redis_client, "t-out")["state"] == "COMPLETED"
    task_dir = data_dir / "tasks" / "t-out"
    assert (task_dir / "stdout.log").read_text() == "t-out dep-1 hello world hidden\n"
    assert (task_dir / "stderr.log").read_text() == "oops\n"
    assert (task_dir / "exit-code").read_text().strip() == "0"


def test_a_redelivered_start_does_not_spawn_again(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    start_via_job(redis_client, node_id, "t-once", "sleep 30")
    pid = supervisor.record("t-once").pid
    start_via_job(redis_client, node_id, "t-once", "sleep 30")
    start_via_job(redis_client, node_id, "t-done", "true")
    ended_event(redis_client, "t-done")
    start_via_job(redis_client, node_id, "t-done", "true")

    assert supervisor.record("t-once").pid == pid and pid_alive(pid)
    assert [e["state"] for e in task_events(redis_client, "t-once")] == ["RUNNING"]
    assert [e["state"] for e in task_events(redis_client, "t-done")] == ["RUNNING", "COMPLETED"]
    assert len(processes_of_task("t-once", ["sleep", "30"])) == 1


def test_stop_kills_the_whole_tree(redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor) -> None:
    start_via_job(redis_client, node_id, "t-tree", "sleep 300 & sleep 300 & wait")
    pid = supervisor.record("t-tree").pid
    pids = wait_until(lambda: tree_of_at_least(pid, 4), what="wrapper, shell and 2 sleeps")

    stop_via_job(redis_client, node_id, ["t-tree"], grace=5.0)

    event = ended_event(redis_client, "t-tree")
    assert (event["state"], event["exit_code"]) == ("STOPPED", -15)
    assert not [p for p in pids if pid_alive(p)]


def test_stop_sends_sigkill_after_the_grace_period(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    start_via_job(redis_client, node_id, "t-stubborn", 'trap "" TERM; sleep 300')
    pid = supervisor.record("t-stubborn").pid
    # The sleep starts after the trap: once it runs, the whole command ignores SIGTERM.
    [sleeper] = wait_until(lambda: processes_of_task("t-stubborn", ["sleep", "300"]), what="the sleep")
    pids = tree_pids(pid)
    assert sleeper.pid in pids

    asked = time.monotonic()
    stop_via_job(redis_client, node_id, ["t-stubborn"], grace=0.3)

    event = ended_event(redis_client, "t-stubborn")
    assert time.monotonic() - asked >= 0.3
    assert (event["state"], event["exit_code"]) == ("STOPPED", -9)
    assert not [p for p in pids if pid_alive(p)]


def test_stopping_an_unknown_or_ended_task(redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor) -> None:
    start_via_job(redis_client, node_id, "t-ended", "exit 0")
    ended_event(redis_client, "t-ended")

    stop_via_job(redis_client, node_id, ["t-ended", "t-nobody"], grace=1.0, deployment_id="dep-9")

    assert [e["state"] for e in task_events(redis_client, "t-ended")] == ["RUNNING", "COMPLETED"]
    [unknown] = task_events(redis_client, "t-nobody")
    assert (unknown["state"], unknown["error"]) == ("STOPPED", UNKNOWN_TASK_ERROR)
    assert unknown["deployment_id"] == "dep-9"  # so the manager can end the task it sent
    # A start delivered after that stop does not run the task.
    start_via_job(redis_client, node_id, "t-nobody", "sleep 30")
    assert len(task_events(redis_client, "t-nobody")) == 1


def test_a_task_that_cannot_be_spawned_fails_with_the_error(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor, data_dir: Path
) -> None:
    (data_dir / "tasks").write_text("a file where the tasks directory should be")
    start_via_job(redis_client, node_id, "t-nospawn", "true")
    start_via_job(redis_client, node_id, "../escape", "true")

    [nospawn] = task_events(redis_client, "t-nospawn")
    assert nospawn["state"] == "FAILED" and nospawn["error"].startswith("could not start")
    [escape] = task_events(redis_client, "../escape")
    assert escape["state"] == "FAILED" and "cannot name a directory" in escape["error"]


def test_events_held_back_while_redis_is_unreachable_are_published_later(
    redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    from shared import report_streams

    reachable = False

    def publish(event: dict) -> None:
        if not reachable:
            raise redis_lib.ConnectionError("Redis is down (simulated by the publish callable)")
        report_streams.publish(redis_client, event)

    sup = Supervisor(data_dir, node_id, publish, poll_interval=0.05)
    sup.start_monitor()
    try:
        sup.start(start_payload("t-held", "exit 5"))
        wait_until(lambda: sup.record("t-held").state == "FAILED", what="the task to end")
        assert task_events(redis_client, "t-held") == []
        assert sup.record("t-held").reported is False

        reachable = True
        event = wait_until(lambda: last_state(redis_client, "t-held"), what="the held-back event")
        assert (event["state"], event["exit_code"]) == ("FAILED", 5)
        assert sup.record("t-held").reported is True
    finally:
        sup.close()
