"""A final command report, a task event or a final component report goes again until the manager
acknowledges it: after a wait, at once when Redis restarted (what it held may be gone), and after an agent
restart; never again once acknowledged."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import pytest
import redis as redis_lib

from shared import acks, keys, report_streams
from shared import jobs as job_names
from tests.support import RedisServer, wait_until
from tests.worker_agent.conftest import (
    command_reports,
    node_queue,
    node_reports,
    run_jobs,
    run_payload,
    start_payload,
    task_events,
    watching,
)
from worker_agent import jobs, report_acks
from worker_agent.components.outbox import Outbox
from worker_agent.deployment_tasks.supervisor import Supervisor
from worker_agent.fleet_commands.runner import CommandRunner


def finals(redis: redis_lib.Redis, task_id: str) -> list[dict[str, object]]:
    return [r for r in command_reports(redis, task_id) if r["status"] != "running"]


def acknowledge(redis: redis_lib.Redis, node_id: str, name: str, kind: str = acks.COMMAND) -> None:
    """What the manager's duties do once a report is committed."""
    pipe = redis.pipeline(transaction=False)
    acks.acknowledge(pipe, node_id, kind, [name])
    pipe.execute()


@pytest.fixture
def quick_resend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_acks, "RESEND_FIRST_SECONDS", 0.3)


def test_an_unacknowledged_report_goes_again_with_its_output_until_acknowledged(
    redis_client: redis_lib.Redis, node_id: str, commands: CommandRunner, quick_resend: None
) -> None:
    node_queue(redis_client, node_id).enqueue(job_names.RUN_COMMAND, run_payload("c-ack", "echo hi"))
    run_jobs(redis_client, node_id)

    # Nobody acknowledges: the same final report, output included, goes again (0.3 s, then 0.6 s...).
    sent = wait_until(lambda: (found := finals(redis_client, "c-ack")) and len(found) >= 3 and found, timeout=10)
    assert all(report == sent[0] for report in sent), sent
    assert sent[0]["status"] == "succeeded" and sent[0]["stdout"] == "hi\n"
    record = commands.record("c-ack")
    assert record is not None and record.reported and not record.acked

    acknowledge(redis_client, node_id, "c-ack")
    wait_until(lambda: commands.record("c-ack").acked, timeout=5, what="the acknowledgment to be read")
    wait_until(lambda: not redis_client.exists(keys.node_acked(node_id)), timeout=5, what="the acked set emptied")
    count = len(finals(redis_client, "c-ack"))
    # Polled for longer than the next sending would take (1.2 s): none comes.
    with pytest.raises(AssertionError):
        wait_until(lambda: len(finals(redis_client, "c-ack")) > count, timeout=2.5, what="another sending")
    assert len(commands._publisher.unacknowledged) == 0


def test_a_restarted_redis_gets_the_report_again_at_once(data_dir: Path, node_id: str) -> None:
    server = RedisServer().start()
    client = redis_lib.Redis.from_url(server.url)
    runner = CommandRunner(data_dir, node_id, lambda: client)
    runner.recover()
    runner.start()
    jobs.register_commands(runner)
    try:
        node_queue(client, node_id).enqueue(job_names.RUN_COMMAND, run_payload("c-lost", "echo kept"))
        run_jobs(client, node_id)
        wait_until(lambda: finals(client, "c-lost"), timeout=10, what="the first sending")
        wait_until(lambda: runner._publisher.unacknowledged._run_id, timeout=5, what="the server's run id read")

        # Redis dies and comes back empty (what it had not written to disk is gone): well before the 5 s
        # resend, the agent notices the new server and sends the report again.
        server.stop()
        again = RedisServer()
        again.port = server.port
        again.start()
        try:
            report = wait_until(lambda: finals(client, "c-lost"), timeout=3, what="the report sent to the new Redis")
            assert report[0]["stdout"] == "kept\n"
        finally:
            again.stop()
    finally:
        jobs.register_commands(None)
        runner.close()
        client.close()
        server.stop()


def test_a_restarted_agent_sends_again_what_was_never_acknowledged(
    redis_client: redis_lib.Redis, data_dir: Path, node_id: str
) -> None:
    first = CommandRunner(data_dir, node_id, lambda: redis_client)
    first.recover()
    first.start()
    jobs.register_commands(first)
    node_queue(redis_client, node_id).enqueue(job_names.RUN_COMMAND, run_payload("c-restart", "echo once"))
    run_jobs(redis_client, node_id)
    wait_until(lambda: finals(redis_client, "c-restart"), timeout=10, what="the first sending")
    jobs.register_commands(None)
    first.close()
    redis_client.delete(keys.node_reports(node_id))  # as a Redis that lost it

    second = CommandRunner(data_dir, node_id, lambda: redis_client)
    second.recover()
    second.start()
    try:
        [report] = wait_until(lambda: finals(redis_client, "c-restart"), timeout=5, what="the report sent again")
        assert (report["status"], report["stdout"]) == ("succeeded", "once\n")  # kept on disk with its output
        acknowledge(redis_client, node_id, "c-restart")
        wait_until(lambda: second.record("c-restart").acked, timeout=5, what="the acknowledgment")
    finally:
        second.close()
    assert not any((data_dir / "command-reports").iterdir())  # nothing held once acknowledged


def test_a_task_event_goes_again_until_acknowledged_and_after_an_agent_restart(
    redis_client: redis_lib.Redis, data_dir: Path, node_id: str, quick_resend: None
) -> None:
    def make() -> Supervisor:
        publish = partial(report_streams.publish, redis_client)
        return Supervisor(data_dir, node_id, publish, poll_interval=0.05, redis=lambda: redis_client)

    def ended_events() -> list[dict[str, object]]:
        return [e for e in task_events(redis_client, "t-ack") if e["state"] == "COMPLETED"]

    with watching(make(), jobs.register):
        node_queue(redis_client, node_id).enqueue(job_names.START_TASK, start_payload("t-ack", "true"))
        run_jobs(redis_client, node_id)
        wait_until(lambda: len(ended_events()) >= 3, timeout=10, what="the COMPLETED event sent again")
        acknowledge(redis_client, node_id, "t-ack:COMPLETED", acks.TASK)
        wait_until(lambda: watching_record(data_dir, "t-ack")["acked"], timeout=5, what="the acknowledgment")
        count = len(ended_events())
        with pytest.raises(AssertionError):
            wait_until(lambda: len(ended_events()) > count, timeout=2.5, what="another sending")

    # Unacknowledged when the agent stopped: the next one sends it again.
    record = json.loads((data_dir / "state.json").read_text())
    record["tasks"]["t-ack"]["acked"] = False
    (data_dir / "state.json").write_text(json.dumps(record))
    redis_client.delete(keys.node_reports(node_id))
    with watching(make(), jobs.register):
        wait_until(ended_events, timeout=5, what="the event sent again by the restarted agent")


def watching_record(data_dir: Path, task_id: str) -> dict[str, object]:
    """The saved record of a task in state.json."""
    record: dict[str, object] = json.loads((data_dir / "state.json").read_text())["tasks"][task_id]
    return record


def test_a_final_component_report_goes_again_until_acknowledged(
    redis_client: redis_lib.Redis, node_id: str, quick_resend: None
) -> None:
    outbox = Outbox(node_id, partial(report_streams.publish_component_report, redis_client), lambda: redis_client)
    report = {
        "business_id": "b1",
        "component_id": "web",
        "node_id": node_id,
        "generation": 2,
        "status": "failed",
        "timestamp": time.time(),
        "exit_code": 3,
        "error_message": "exited with code 3",
    }

    def sent() -> int:
        outbox.flush()  # what the component monitor does every poll
        return len(node_reports(redis_client, report_streams.COMPONENT))

    outbox.add({**report, "status": "running"})  # not final: never waits for an acknowledgment
    outbox.add(report)
    wait_until(lambda: sent() >= 4, timeout=10, interval=0.05, what="the failed report sent again")
    statuses = [report["status"] for report in node_reports(redis_client, report_streams.COMPONENT)]
    assert statuses[0] == "running" and set(statuses[1:]) == {"failed"}
    assert not outbox.empty()

    acknowledge(redis_client, node_id, acks.component_name(report), acks.COMPONENT)
    wait_until(lambda: sent() and outbox.empty(), timeout=5, what="the acknowledgment read")
    count = sent()
    with pytest.raises(AssertionError):
        wait_until(lambda: sent() > count, timeout=2.5, what="another sending")


def test_the_acked_set_is_first_read_a_check_interval_after_a_report_went_out(
    redis_client: redis_lib.Redis, node_id: str
) -> None:
    """Not at once (the manager acknowledges in about 0.1 s): that read was one more round trip per command."""
    pending = report_acks.PendingAcks(node_id, acks.COMMAND)
    pending.sent("first", {"task_id": "first"})
    assert not pending.check_due()
    wait_until(pending.check_due, timeout=report_acks.CHECK_SECONDS + 5, interval=0.02, what="the first check")
    pending.check(redis_client)
    pending.forget("first")
    checked = time.monotonic()
    wait_until(lambda: time.monotonic() > checked + report_acks.CHECK_SECONDS, timeout=5, interval=0.02)

    pending.sent("second", {"task_id": "second"})  # the last check's time is long past: not due for that
    assert not pending.check_due()
    pending.sent("third", {"task_id": "third"})  # one already waits: its check comes no later
    wait_until(pending.check_due, timeout=report_acks.CHECK_SECONDS + 5, interval=0.02, what="the next check")
