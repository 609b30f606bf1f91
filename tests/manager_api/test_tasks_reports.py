"""Fleet tasks with the duties running: reports applied, final states, deadlines, offline nodes, wait, prune."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.models import FleetTask, TaskHost, utcnow
from manager_api.services import job_keys
from manager_api.services.fleet_tasks import upkeep as fleet_task_upkeep
from shared import keys, report_streams
from shared.defaults import OUTPUT_CAP_BYTES
from tests.support import wait_until

from .conftest import stream_consumed
from .tasks_helpers import add_node, create, detail, finish, host, output, report


def _duties(settings: Settings, slack: float) -> Iterator[Duties]:
    worker = Duties(replace(settings, task_deadline_slack_seconds=slack), tick=0.1, block_ms=100)
    worker.start()
    yield worker
    worker.stop()
    worker.redis.close()


@pytest.fixture
def fleet_duties(app: Any, settings: Settings) -> Iterator[Duties]:
    """Duties ticking fast with a short deadline slack, so deadline tests take a second, not five."""
    yield from _duties(settings, 0.2)


@pytest.fixture
def patient_duties(app: Any, settings: Settings) -> Iterator[Duties]:
    """Duties that leave a canceled host to its node for a minute: a test reading the task between a cancel
    and the node's answer must not race the deadline (a loaded CI machine once took over 0.2 s there)."""
    yield from _duties(settings, 60)


@pytest.fixture
def two_nodes(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2")


def status_is(client: FlaskClient, task_id: str, status: str) -> bool:
    got = detail(client, task_id)
    return got["status"] == status and got["finished_at"] is not None


def consumed(redis_client: redis_lib.Redis, entry_id: str | None, node_id: str = "n1") -> bool:
    """Whether everything up to ``entry_id`` of ``node_id``'s reports stream was delivered and acked."""
    return stream_consumed(redis_client, node_id, entry_id)


def test_reports_drive_hosts_and_task_to_completed(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, fleet_duties: Duties
) -> None:
    task_id = create(client, targets=["*"])["task_id"]
    report(redis_client, task_id, "n1", "running", pid=11, started_at=time.time())
    wait_until(lambda: host(detail(client, task_id), "n1")["status"] == "running", what="n1 running")
    running = detail(client, task_id)
    assert running["status"] == "running" and running["progress"]["running"] == 1
    finish(redis_client, task_id, "n1", stdout="hi\n")
    finish(redis_client, task_id, "n2", stdout="hi\n", stdout_truncated=True)
    wait_until(lambda: status_is(client, task_id, "completed"), what="task completed")
    done = detail(client, task_id)
    assert (done["total_hosts"], done["completed_hosts"], done["failed_hosts"]) == (2, 2, 0)
    assert done["progress"]["percent"] == 100 and done["progress"]["succeeded"] == 2
    n1, n2 = host(done, "n1"), host(done, "n2")
    assert (n1["stdout"], n1["exit_code"], n2["execution_time"]) == ("hi\n", 0, 250)
    assert n1["execution_time"] >= 250  # its first running report's start is kept
    assert n1["started_at"].endswith("Z") and n1["finished_at"].endswith("Z")
    assert (n2["stdout_truncated"], n1["stdout_truncated"]) == (True, False)


def test_a_report_is_believed_only_when_its_node_signed_it(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, fleet_duties: Duties
) -> None:
    """Even where nodes share a Redis user (--agent-redis-url), a node cannot speak for another one."""
    task_id = create(client, targets=["*"])["task_id"]
    forged = {"task_id": task_id, "node_id": "n1", "status": "succeeded", "at": time.time(), "exit_code": 0}
    report_streams.publish_command_report(redis_client, forged)  # unsigned
    report_streams.publish_command_report(redis_client, forged, key=job_keys.node_key("n2"))  # n2 speaking for n1
    marker = report_streams.publish_command_report(
        redis_client, {**forged, "stdout": "tampered"}, key=b"k" * 32
    )  # a key of nobody's
    wait_until(lambda: consumed(redis_client, marker), what="the forged reports read and dropped")
    assert host(detail(client, task_id), "n1")["status"] == "pending"

    finish(redis_client, task_id, "n1", stdout="hi\n")  # signed by n1, as its agent does
    wait_until(lambda: host(detail(client, task_id), "n1")["status"] == "succeeded", what="n1's own report")
    assert host(detail(client, task_id), "n1")["stdout"] == "hi\n"


def test_one_failure_fails_the_task_and_reports_are_idempotent(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, fleet_duties: Duties
) -> None:
    task_id = create(client, targets=["*"])["task_id"]
    finish(redis_client, task_id, "n1")
    finish(redis_client, task_id, "n2", exit_code=3, stderr="boom")
    # Repeats and late reports after the end change nothing.
    report(redis_client, task_id, "n2", "running", pid=9)
    report(redis_client, task_id, "n2", "succeeded", exit_code=0)
    report(redis_client, task_id, "n1", "failed", exit_code=1)
    report(redis_client, task_id, "ghost-node", "running")
    report(redis_client, "no-such-task", "n1", "running")
    redis_client.xadd(keys.node_reports("n1"), {"v": "1", "kind": "command", "body": "{broken"})
    marker = report(redis_client, task_id, "n1", "running")
    n2_marker = report(redis_client, "no-such-task", "n2", "running")
    wait_until(lambda: consumed(redis_client, marker), what="reports consumed")
    wait_until(lambda: consumed(redis_client, n2_marker, "n2"), what="n2's reports consumed")
    got = detail(client, task_id)
    assert got["status"] == "failed" and got["finished_at"]
    assert (got["completed_hosts"], got["failed_hosts"]) == (2, 1)
    assert (host(got, "n2")["status"], host(got, "n2")["exit_code"], host(got, "n2")["stderr"]) == ("failed", 3, "boom")
    assert (host(got, "n1")["status"], host(got, "n1")["exit_code"]) == ("succeeded", 0)


def test_timed_out_and_canceled_reports(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, patient_duties: Duties
) -> None:
    task_id = create(client, targets=["*"], timeout=60)["task_id"]
    report(redis_client, task_id, "n1", "timed_out", error_message="timed out after 60 s", exit_code=-9)
    report(redis_client, task_id, "n2", "running", pid=5)
    wait_until(lambda: host(detail(client, task_id), "n2")["status"] == "running", what="n2 running")
    client.post(f"/api/tasks/{task_id}/cancel")
    canceled = detail(client, task_id)
    assert canceled["status"] == "canceled" and canceled["finished_at"] is None  # n2 still running
    report(redis_client, task_id, "n2", "canceled", exit_code=-15, stdout="partial")
    wait_until(lambda: status_is(client, task_id, "canceled"), what="cancel finished")
    got = detail(client, task_id)
    assert host(got, "n1")["error_message"] == "timed out after 60 s"
    assert (host(got, "n2")["status"], host(got, "n2")["stdout"]) == ("canceled", "partial")


def test_deadline_ends_silent_hosts(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, fleet_duties: Duties
) -> None:
    task_id = create(client, targets=["*"], timeout=1)["task_id"]
    report(redis_client, task_id, "n1", "running", pid=5)  # then never a word again; n2 never answers at all
    wait_until(lambda: status_is(client, task_id, "failed"), timeout=5, what="deadline enforced")
    got = detail(client, task_id)
    assert host(got, "n1")["status"] == "timed_out" and "timed out after 1 s" in host(got, "n1")["error_message"]
    assert (host(got, "n2")["status"], host(got, "n2")["error_message"]) == ("failed", "no answer from node")


def test_running_host_on_a_node_gone_offline_fails(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet_duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1", interval=0.2)
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2")
    task_id = create(client, targets=["*"], timeout=600)["task_id"]
    report(redis_client, task_id, "n1", "running", pid=5)
    report(redis_client, task_id, "n2", "running", pid=6)
    wait_until(lambda: host(detail(client, task_id), "n1")["status"] == "failed", timeout=5, what="n1 failed")
    got = detail(client, task_id)
    assert host(got, "n1")["error_message"] == "node went offline" and host(got, "n2")["status"] == "running"


def test_wait_answers_with_every_result(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, fleet_duties: Duties
) -> None:
    def agents() -> None:
        task_id = wait_until(lambda: FleetTask.select().first(), what="task created").task_id
        wait_until(lambda: TaskHost.select().count() == 2, what="hosts recorded")
        finish(redis_client, task_id, "n1", stdout="one")
        finish(redis_client, task_id, "n2", stdout="two")

    thread = threading.Thread(target=agents)
    thread.start()
    started = time.monotonic()
    task = create(client, query="?wait=10", targets=["*"])
    thread.join()
    assert time.monotonic() - started < 5
    assert task["status"] == "completed" and {h["stdout"] for h in task["hosts"]} == {"one", "two"}
    # On GET too; and a wait that runs out answers with the task as it is.
    again = client.get(f"/api/tasks/{task['task_id']}?wait=1").get_json()
    assert again["status"] == "completed"
    slow = create(client, query="?wait=0.3", targets=["*"])
    assert slow["status"] == "running"


def test_prune_removes_old_ended_tasks_only(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None
) -> None:
    old = create(client, targets=["n1"])["task_id"]
    recent = create(client, targets=["ghost"])["task_id"]  # failed at once
    live = create(client, targets=["*"])["task_id"]
    output(redis_client, old, "n1", "stdout", ["x"])  # each host's output is a stream of its own
    FleetTask.update(finished_at=utcnow() - timedelta(days=31), status="failed").where(
        FleetTask.task_id == old
    ).execute()
    assert fleet_task_upkeep.prune(redis_client, 30) == 1
    assert [t.task_id for t in FleetTask.select().order_by(FleetTask.id)] == [recent, live]
    assert TaskHost.select().count() == 3 and not redis_client.exists(keys.task_output(old, "n1"))


def test_stored_output_is_capped(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, fleet_duties: Duties
) -> None:
    task_id = create(client, targets=["n1"])["task_id"]
    finish(redis_client, task_id, "n1", stdout="x" * (OUTPUT_CAP_BYTES + 10))
    wait_until(lambda: status_is(client, task_id, "completed"), what="completed")
    n1 = host(detail(client, task_id), "n1")
    assert len(n1["stdout"]) == OUTPUT_CAP_BYTES and n1["stdout_truncated"] is True
