"""The duties thread against the real Redis and database: events applied, node transitions, the lock."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.models import AuditLog, Deployment, DeploymentTask, Node
from shared import keys
from shared.states import NodeStatus
from tests.support import RedisServer, wait_until

from .conftest import beat, join, online_node, publish_task_event, running_duties, stream_consumed, template_body


def deploy_one(client: FlaskClient, redis_client: redis_lib.Redis, *commands: str) -> tuple[str, list[str]]:
    online_node(client, redis_client, "n1", "10.0.0.1")
    client.post("/api/task/task_group", json=template_body("app", list(commands)))
    deployment_id = client.post("/api/task/task_group/deploy", json={"name": "app"}).get_json()["id"]
    task_ids = [t["id"] for t in client.get(f"/deployments/{deployment_id}").get_json()["tasks"]]
    return deployment_id, task_ids


def task_event(deployment_id: str, task_id: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "deployment_id": deployment_id,
        "node_id": "n1",
        "state": state,
        "at": time.time(),
        **extra,
    }


def task_state(task_id: str) -> str:
    return str(DeploymentTask.get_by_id(task_id).state)


def deployment(client: FlaskClient, deployment_id: str) -> dict[str, Any]:
    result: dict[str, Any] = client.get(f"/deployments/{deployment_id}").get_json()
    return result


def test_events_drive_tasks_and_deployment(client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties) -> None:
    deployment_id, (t1, t2) = deploy_one(client, redis_client, "/a", "/b")
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=111, started_at=time.time()))
    publish_task_event(redis_client, task_event(deployment_id, t2, "RUNNING", pid=222))
    wait_until(lambda: task_state(t2) == "RUNNING", what="t2 RUNNING")
    detail = deployment(client, deployment_id)
    assert detail["state"] == "RUNNING"
    assert {t["pid"] for t in detail["tasks"]} == {111, 222} and all(t["started_at"] for t in detail["tasks"])
    publish_task_event(redis_client, task_event(deployment_id, t1, "COMPLETED", exit_code=0))
    wait_until(lambda: task_state(t1) == "COMPLETED", what="t1 COMPLETED")
    status = client.post("/api/task/task_group/query", json={"id": deployment_id}).get_json()
    assert (status["status"], status["state"]) == (0, "RUNNING")
    publish_task_event(redis_client, task_event(deployment_id, t2, "FAILED", exit_code=3))
    wait_until(lambda: deployment(client, deployment_id)["state"] == "FAILED", what="deployment FAILED")
    failed = next(t for t in deployment(client, deployment_id)["tasks"] if t["id"] == t2)
    assert (failed["exit_code"], failed["state"]) == (3, "FAILED") and failed["ended_at"]
    assert client.post("/api/task/task_group/query", json={"id": deployment_id}).get_json()["status"] == 1


def test_events_are_idempotent_and_never_revive_a_task(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    deployment_id, (t1,) = deploy_one(client, redis_client, "/a")
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=10))
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=10))
    publish_task_event(redis_client, task_event(deployment_id, t1, "COMPLETED", exit_code=0))
    # Re-sent after an agent restart: must not move the ended task back.
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=10))
    publish_task_event(redis_client, task_event(deployment_id, t1, "FAILED", exit_code=9))
    marker = publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=10))
    wait_until(lambda: _acked(redis_client, marker), what="all events consumed")
    task = DeploymentTask.get_by_id(t1)
    assert (task.state, task.exit_code) == ("COMPLETED", 0)
    assert Deployment.get_by_id(deployment_id).state == "COMPLETED"


def _acked(redis_client: redis_lib.Redis, entry_id: str | None, node_id: str = "n1") -> bool:
    """Whether everything up to ``entry_id`` of ``node_id``'s reports was delivered and then acked (so applied)."""
    return stream_consumed(redis_client, node_id, entry_id)


def test_stop_then_stopped_events_end_the_deployment(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    deployment_id, (t1, t2) = deploy_one(client, redis_client, "/a", "/b")
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=5))
    wait_until(lambda: task_state(t1) == "RUNNING", what="t1 RUNNING")
    client.post("/api/task/task_group/stop", json={"id": deployment_id})
    # The start of t2 was still in flight: its RUNNING records the pid but keeps STOPPING.
    publish_task_event(redis_client, task_event(deployment_id, t2, "RUNNING", pid=6))
    wait_until(lambda: DeploymentTask.get_by_id(t2).pid == 6, what="t2 pid")
    assert task_state(t2) == "STOPPING"
    publish_task_event(redis_client, task_event(deployment_id, t1, "STOPPED", exit_code=-15))
    publish_task_event(redis_client, task_event(deployment_id, t2, "STOPPED", exit_code=-9))
    wait_until(lambda: deployment(client, deployment_id)["state"] == "STOPPED", what="deployment STOPPED")
    detail = deployment(client, deployment_id)
    assert detail["stopped_at"] and detail["status"] == 1
    assert sorted(t["exit_code"] for t in detail["tasks"]) == [-15, -9]


def test_malformed_and_foreign_entries_are_acked(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    deployment_id, (t1,) = deploy_one(client, redis_client, "/a")
    stream = keys.node_reports("n1")
    redis_client.xadd(stream, {"v": "1", "kind": "event", "body": "{not json"})
    redis_client.xadd(stream, {"v": "1", "kind": "event", "body": '{"task_id": "x"}'})
    redis_client.xadd(stream, {"v": "1", "kind": "no-such-kind", "body": "{}"})
    publish_task_event(redis_client, task_event(deployment_id, "unknown-task", "RUNNING"))
    other = publish_task_event(redis_client, {**task_event(deployment_id, t1, "RUNNING"), "node_id": "other-node"})
    marker = publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=77))
    wait_until(lambda: _acked(redis_client, marker), what="stream drained")
    wait_until(lambda: _acked(redis_client, other, "other-node"), what="the other node's stream drained")
    assert DeploymentTask.get_by_id(t1).pid == 77


def test_a_report_whose_ring_nobody_heard_is_read_by_the_sweep(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    """A ring is a pub/sub message: one sent while no duties listened (a restart) is lost, the report is not."""
    deployment_id, (t1,) = deploy_one(client, redis_client, "/a")
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=55))  # rung to nobody
    with running_duties(settings):
        wait_until(lambda: DeploymentTask.get_by_id(t1).pid == 55, what="the event read by the sweep")


def test_pending_entries_are_applied_after_a_restart(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    deployment_id, (t1,) = deploy_one(client, redis_client, "/a")
    stream = keys.node_reports("n1")
    redis_client.xgroup_create(stream, keys.EVENTS_GROUP, id="0", mkstream=True)
    publish_task_event(redis_client, task_event(deployment_id, t1, "RUNNING", pid=42))
    # A previous duties run read the entry and died before acking it.
    redis_client.xreadgroup(keys.EVENTS_GROUP, "duties-test", {stream: ">"}, count=10)
    assert redis_client.xpending(stream, keys.EVENTS_GROUP)["pending"] == 1
    worker = Duties(settings, tick=0.1, block_ms=100, consumer="duties-test")
    worker.start()
    try:
        wait_until(lambda: DeploymentTask.get_by_id(t1).pid == 42, what="pending event applied")
        wait_until(lambda: redis_client.xpending(stream, keys.EVENTS_GROUP)["pending"] == 0)
    finally:
        worker.stop()


def test_node_transitions_are_persisted_and_audited(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    join(client, "n1", "web-01", "10.0.0.1", interval=0.2)
    beat(redis_client, "n1", interval=0.2)
    wait_until(lambda: Node.get_by_id("n1").status == NodeStatus.ONLINE, what="n1 online in the db")
    assert Node.get_by_id("n1").last_seen is not None
    wait_until(lambda: Node.get_by_id("n1").status == NodeStatus.OFFLINE, timeout=5, what="n1 offline in the db")
    actions = [a for (a,) in AuditLog.select(AuditLog.action).where(AuditLog.target == "n1").tuples()]
    assert "node.online" in actions and "node.offline" in actions


def test_only_one_duties_holds_the_lock(settings: Settings, redis_client: redis_lib.Redis, duties: Duties) -> None:
    wait_until(lambda: redis_client.get(keys.DUTIES_LOCK) is not None, what="lock taken")
    holder = redis_client.get(keys.DUTIES_LOCK)
    second = Duties(settings, tick=0.1, block_ms=100, consumer="duties-other")
    second.start()
    try:
        time.sleep(0.3)
        assert redis_client.get(keys.DUTIES_LOCK) == holder
        assert not second.holds_lock
    finally:
        second.stop()
    duties.stop()
    assert redis_client.get(keys.DUTIES_LOCK) is None


def test_duties_survive_a_redis_restart(client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings) -> None:
    deployment_id, (t1,) = deploy_one(client, redis_client, "/a")
    server = RedisServer().start()
    try:
        own = replace(settings, redis_url=server.url)
        worker = Duties(own, tick=0.1, block_ms=100)
        worker.start()
        local = redis_lib.Redis.from_url(server.url)
        stream = keys.node_reports("n1")  # a known node: its group is made at the first sweep
        wait_until(lambda: local.exists(stream), what="group created")
        server.stop()
        time.sleep(0.3)
        restarted = RedisServer()
        restarted.port = server.port
        restarted.start()
        server = restarted
        # A fresh Redis has no consumer group: the duties must recreate it and keep going.
        wait_until(lambda: local.exists(stream), timeout=15, what="group recreated")
        publish_task_event(local, task_event(deployment_id, t1, "RUNNING", pid=31))
        wait_until(lambda: DeploymentTask.get_by_id(t1).pid == 31, what="event applied after the restart")
        assert worker.is_alive()
        worker.stop()
        worker.redis.close()
        local.close()
    finally:
        server.stop()
