"""Fleet task commands on a real Redis with real processes: output, exit codes, cap, timeout, cancel, restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared import jobs as job_names
from shared import keys
from shared.defaults import OUTPUT_CAP_BYTES
from tests.support import free_port, wait_until
from tests.worker_agent.conftest import (
    command_reports,
    final_report,
    node_queue,
    output_lines,
    run_jobs,
    run_payload,
)
from worker_agent import process_tree
from worker_agent.fleet_commands.recovery import RESTARTED_ERROR
from worker_agent.fleet_commands.runner import CommandRunner
from worker_agent.labels import parse_labels


def group_left(pgid: int) -> list[psutil.Process]:
    """Live processes of the process group a command led."""
    return process_tree.group_members(pgid)


def wait_final(redis: redis_lib.Redis, task_id: str, timeout: float = 10) -> dict[str, Any]:
    return wait_until(lambda: final_report(redis, task_id), timeout=timeout, what=f"the final report of {task_id}")


@contextmanager
def restarted_runner(data_dir: Path, node_id: str, redis: redis_lib.Redis) -> Iterator[CommandRunner]:
    """A new CommandRunner on the same data dir, as a restarted agent builds it: recover, then start."""
    runner = CommandRunner(data_dir, node_id, lambda: redis)
    runner.recover()
    runner.start()
    try:
        yield runner
    finally:
        runner.close()


def test_output_lines_arrive_in_order_and_the_report_carries_everything(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner
) -> None:
    script = 'for i in $(seq 1 300); do echo "line $i"; done; echo "warn $GREETING $CORRAL_TASK_ID" >&2; printf tail'
    node_queue(redis_client, node_id).enqueue(
        job_names.RUN_COMMAND, run_payload("c-lines", script, env={"GREETING": "hi"})
    )
    run_jobs(redis_client, node_id)

    final = wait_final(redis_client, "c-lines")
    [running, again] = command_reports(redis_client, "c-lines")
    assert again == final
    assert running["status"] == "running" and running["pid"] > 0 and running["started_at"] > 0
    assert running["node_id"] == node_id
    expected_stdout = "".join(f"line {i}\n" for i in range(1, 301)) + "tail"
    assert (final["status"], final["exit_code"], final["error_message"]) == ("succeeded", 0, None)
    assert final["stdout"] == expected_stdout and final["stderr"] == "warn hi c-lines\n"
    assert not final["stdout_truncated"] and not final["stderr_truncated"]
    assert final["pid"] == running["pid"] and final["started_at"] <= final["finished_at"]

    lines = output_lines(redis_client, "c-lines", node_id)
    assert {entry["node_id"] for entry in lines} == {node_id}
    assert [e["line"] for e in lines if e["stream"] == "stdout"] == [f"line {i}" for i in range(1, 301)] + ["tail"]
    assert [e["line"] for e in lines if e["stream"] == "stderr"] == ["warn hi c-lines"]
    assert 0 < redis_client.ttl(keys.task_output("c-lines", node_id))


def test_a_non_zero_exit_is_failed_with_its_code(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner
) -> None:
    commands.run(run_payload("c-exit", "echo bad >&2; exit 3"))

    final = wait_final(redis_client, "c-exit")
    assert (final["status"], final["exit_code"], final["stderr"]) == ("failed", 3, "bad\n")
    assert commands.record("c-exit").status == "failed"


def test_output_is_capped_and_flagged_truncated(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner
) -> None:
    # 2 MiB of 64-byte lines on stdout, then a line on stderr: the command is never blocked by the cap.
    line = "x" * 63
    commands.run(run_payload("c-big", f"yes {line} | head -c {2 * 1024 * 1024}; echo end >&2"))

    final = wait_final(redis_client, "c-big", timeout=20)
    assert final["status"] == "succeeded"
    assert final["stdout_truncated"] and not final["stderr_truncated"]
    assert final["stdout"] == f"{line}\n" * (OUTPUT_CAP_BYTES // 64)
    assert final["stderr"] == "end\n"
    stdout_lines = [e["line"] for e in output_lines(redis_client, "c-big", node_id) if e["stream"] == "stdout"]
    assert stdout_lines == [line] * (OUTPUT_CAP_BYTES // 64)


def test_the_timeout_kills_the_whole_group(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner
) -> None:
    began = time.monotonic()
    commands.run(run_payload("c-slow", "echo started; sleep 300 & sleep 300; wait", timeout=1))
    pid = commands.record("c-slow").pid
    wait_until(lambda: len(group_left(pid)) == 3, what="the shell and both sleeps")

    final = wait_final(redis_client, "c-slow")
    assert time.monotonic() - began < 4
    assert final["status"] == "timed_out" and final["error_message"] == "timed out after 1 s"
    assert final["exit_code"] is not None and final["exit_code"] < 0
    assert final["stdout"] == "started\n"
    assert group_left(pid) == []


def test_cancel_kills_the_group_within_a_second(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner
) -> None:
    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.RUN_COMMAND, run_payload("c-cancel", "sleep 300 & sleep 300; wait", timeout=600))
    began = time.monotonic()
    run_jobs(redis_client, node_id)
    assert time.monotonic() - began < 2, "RUN_COMMAND returns at once"
    pid = commands.record("c-cancel").pid
    wait_until(lambda: len(group_left(pid)) == 3, what="the command to run")

    job = queue.enqueue(job_names.CANCEL_COMMAND, {"task_id": "c-cancel"})
    run_jobs(redis_client, node_id)
    final = wait_final(redis_client, "c-cancel")
    job.refresh()
    assert job.get_status() == "finished" and job.started_at is not None
    # From the moment the agent took the cancel job to the moment the command was gone.
    took = final["finished_at"] - job.started_at.replace(tzinfo=UTC).timestamp()
    assert 0 < took < 1.0
    assert (final["status"], final["error_message"]) == ("canceled", "canceled")
    assert group_left(pid) == []
    # A second cancel, and a late cancel of a task never seen, change nothing / are remembered.
    assert commands.cancel("c-cancel") == {"task_id": "c-cancel", "status": "canceled"}
    assert commands.cancel("c-never")["status"] == "canceled"
    assert commands.run(run_payload("c-never", "echo should-not-run"))["started"] is False
    assert wait_final(redis_client, "c-never")["error_message"] == "canceled before it started on this node"


def test_a_redelivered_run_is_a_no_op(redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner) -> None:
    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.RUN_COMMAND, run_payload("c-once", "echo once"))
    queue.enqueue(job_names.RUN_COMMAND, run_payload("c-once", "echo once"))
    run_jobs(redis_client, node_id)
    wait_final(redis_client, "c-once")
    queue.enqueue(job_names.RUN_COMMAND, run_payload("c-once", "echo once"))  # after it ended, too
    run_jobs(redis_client, node_id)
    wait_until(lambda: commands.record("c-once").reported, what="the report to be recorded as published")

    assert [r["status"] for r in command_reports(redis_client, "c-once")] == ["running", "succeeded"]
    assert [e["line"] for e in output_lines(redis_client, "c-once", node_id)] == ["once"]


def test_an_agent_restart_mid_command_kills_it_and_reports_failed(
    redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    first = CommandRunner(data_dir, node_id, lambda: redis_client).start()
    first.run(run_payload("c-restart", "sleep 300 & sleep 300; wait", timeout=600))
    pid = first.record("c-restart").pid
    wait_until(lambda: len(group_left(pid)) == 3, what="the command to run")
    first.close()  # the agent goes away mid-command
    assert len(group_left(pid)) == 3

    with restarted_runner(data_dir, node_id, redis_client) as second:
        final = wait_final(redis_client, "c-restart")
        assert (final["status"], final["error_message"], final["pid"]) == ("failed", RESTARTED_ERROR, pid)
        wait_until(lambda: group_left(pid) == [], what="no process left")
        assert second.run(run_payload("c-restart", "echo again"))["started"] is False


def test_a_restart_kills_what_a_command_left_in_the_background_after_its_shell_ended(
    redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    first = CommandRunner(data_dir, node_id, lambda: redis_client).start()
    first.run(run_payload("c-orphan", "sleep 300 & echo bye", timeout=600))
    pid = first.record("c-orphan").pid
    # The shell is gone (its pipes are still held by the sleep, so the command has not ended).
    wait_until(lambda: [p.name() for p in group_left(pid)] == ["sleep"], what="only the sleep left")
    first.close()

    with restarted_runner(data_dir, node_id, redis_client):
        final = wait_final(redis_client, "c-orphan")
        assert (final["status"], final["error_message"]) == ("failed", RESTARTED_ERROR)
        wait_until(lambda: group_left(pid) == [], what="the background sleep to be killed")


def test_reports_held_while_redis_is_down_are_published_later_even_after_a_restart(
    redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    # Nothing listens there; no retries inside redis-py, so each attempt fails at once.
    dead = redis_lib.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    connection: dict[str, redis_lib.Redis] = {"now": dead}
    first = CommandRunner(data_dir, node_id, lambda: connection["now"]).start()
    first.run(run_payload("c-held-1", "echo one"))
    first.run(run_payload("c-held-2", "echo two"))
    wait_until(lambda: first.record("c-held-1").status == "succeeded", what="the first command to end")
    wait_until(lambda: first.record("c-held-2").status == "succeeded", what="the second command to end")
    assert command_reports(redis_client) == []

    connection["now"] = redis_client  # Redis is back: the held reports go out, in order, with their output
    wait_final(redis_client, "c-held-1")
    assert [r["status"] for r in command_reports(redis_client, "c-held-1")] == ["running", "succeeded"]
    assert final_report(redis_client, "c-held-1")["stdout"] == "one\n"
    assert [e["line"] for e in output_lines(redis_client, "c-held-1", node_id)] == ["one"]

    # The second report is held once more through a restart of the agent.
    redis_client.delete(keys.node_reports(node_id))
    connection["now"] = dead
    first.run(run_payload("c-held-3", "echo three"))
    wait_until(lambda: first.record("c-held-3").status == "succeeded", what="the third command to end")
    first.close()
    with restarted_runner(data_dir, node_id, redis_client):
        final = wait_final(redis_client, "c-held-3")
        assert (final["status"], final["stdout"]) == ("succeeded", "three\n")
    dead.close()


def test_a_burst_of_fifty_commands_is_all_reported(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner
) -> None:
    queue = node_queue(redis_client, node_id)
    for i in range(50):
        queue.enqueue(job_names.RUN_COMMAND, run_payload(f"c-burst-{i}", f"echo hi {i}"))
    run_jobs(redis_client, node_id)

    def all_final() -> list[dict[str, Any]] | None:
        finals = [final_report(redis_client, f"c-burst-{i}") for i in range(50)]
        return finals if all(finals) else None

    finals = wait_until(all_final, timeout=20, what="50 final reports")
    assert [(f["status"], f["stdout"]) for f in finals] == [("succeeded", f"hi {i}\n") for i in range(50)]
    assert commands.running_count() == 0


def test_labels_from_flags_and_environment_are_validated() -> None:
    assert parse_labels(["role=web", "rack=r7"], "zone=eu-1, role=db") == {"zone": "eu-1", "role": "web", "rack": "r7"}
    assert parse_labels([], None) == {} and parse_labels([], " , ") == {}
    for bad in ("novalue", "=x", "bad key=x", "k/y=1", "k="):
        with pytest.raises(ValueError):
            parse_labels([bad], None)
    with pytest.raises(ValueError):
        parse_labels([], "ok=1,broken")


def test_a_command_taken_after_its_deadline_is_reported_expired_and_never_run(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner, tmp_path: Path
) -> None:
    """The manager gives up on a host at the deadline (plus a slack): nothing may start after that."""
    marker = tmp_path / "ran"
    now = float(redis_client.time()[0])
    late = run_payload("t-late", f"touch {marker}", timeout=30, deadline=now - 3)
    short = run_payload("t-short", "sleep 30", timeout=30, deadline=now + 1.5)
    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.RUN_COMMAND, late)
    queue.enqueue(job_names.RUN_COMMAND, short)
    began = time.monotonic()
    run_jobs(redis_client, node_id)

    expired = wait_final(redis_client, "t-late")
    assert expired["status"] == "timed_out" and expired["error_message"].startswith("expired:"), expired
    assert expired.get("pid") is None and not marker.exists()
    # Taken in time, but its deadline comes before its own timeout: it is killed at the deadline.
    ended = wait_final(redis_client, "t-short")
    assert ended["status"] == "timed_out" and time.monotonic() - began < 10, ended
    assert [r["status"] for r in command_reports(redis_client, "t-late")] == ["timed_out"]
