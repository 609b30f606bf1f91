"""DELETE /api/nodes/{id}: an offline node forgotten, what ran there ended, its history kept, its Redis state
gone, hidden from lists, targets and placement, and back as itself when its agent joins again."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api import db
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from manager_api.models import AuditLog, DeploymentTask, Node
from shared import jobs, keys
from shared.api import JOIN_PATH, bearer
from shared.defaults import PROTOCOL_VERSION
from tests.support import free_port

from .business_helpers import add_node, business, comp, component, deploy, detail
from .conftest import JOIN_TOKEN, answer, beat, forget_migration_history, join, template_body
from .tasks_helpers import create, host, output, queued

FORGOTTEN = {"id": "n1", "hostname": "host-n1", "status": "success", "message": "forgotten"}


def forget(client: FlaskClient, node_id: str = "n1", expect: int = 200) -> dict[str, object]:
    return answer(client.delete(f"/api/nodes/{node_id}"), expect)


def listed(client: FlaskClient) -> list[str]:
    return [n["id"] for n in answer(client.get("/api/nodes"))["nodes"]]


def audited(action: str) -> list[AuditLog]:
    return list(AuditLog.select().where(AuditLog.action == action))


def test_an_online_node_and_an_unknown_one_are_refused(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1")
    refused = forget(client, expect=409)
    assert refused == {"error": "node n1 (host-n1) is online: stop its agent first"}
    assert listed(client) == ["n1"] and redis_client.exists(keys.node_summary("n1"))
    for node_id in ("nope", "x" * 100):
        assert forget(client, node_id, 404) == {"error": "Node not found"}
    assert not audited("node.forgotten")


def test_what_ran_there_ends_and_its_history_keeps_the_hostname(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    add_node(client, redis_client, "n1", labels={"role": "a"})
    add_node(client, redis_client, "n2", labels={"role": "b"})
    answer(client.put("/api/nodes/n1/labels", json={"labels": {"rack": "r7"}}))
    answer(client.post("/api/task/task_group", json=template_body("app", ["host-n1:/a"], ["host-n2:/b"])))
    deployment_id = answer(client.post("/api/task/task_group/deploy", json={"name": "app"}))["id"]
    task_id = create(client, name="uptime", command="uptime", targets=["n1"])["task_id"]
    on = {"role": "a"}, {"role": "b"}
    body = business(component("a", affinity={"node_labels": on[0]}), component("b", affinity={"node_labels": on[1]}))
    business_id = deploy(client, body)["business_id"]
    redis_client.delete(keys.node_summary("n1"))  # n1 goes silent; its other keys are still there
    output(redis_client, task_id, "n1", "stdout", ["a line"])

    assert forget(client) == FORGOTTEN
    # Deployment tasks there are LOST (their deployment FAILED); the detail still names the node.
    shown = answer(client.get(f"/deployments/{deployment_id}"))
    on_n1 = next(t for t in shown["tasks"] if t["node"]["id"] == "n1")
    assert (on_n1["state"], on_n1["error"], on_n1["node"]["hostname"]) == ("LOST", "node forgotten", "host-n1")
    assert on_n1["ended_at"] and shown["state"] == "FAILED"
    assert next(t for t in shown["tasks"] if t["node"]["id"] == "n2")["state"] == "PENDING"
    # A fleet task host there fails; the task with it.
    task = answer(client.get(f"/api/tasks/{task_id}"))
    assert (host(task, "n1")["status"], host(task, "n1")["error_message"], task["status"]) == (
        "failed",
        "node forgotten",
        "failed",
    )
    # Its component fails for good; the rollout rolls back on n2.
    got = detail(client, business_id)
    a = comp(got, "a")
    assert (a["status"], a["error_message"], a["hostname"]) == ("failed", "node host-n1 forgotten", "host-n1")
    assert got["status"] == "failed" and comp(got, "b")["status"] == "stopping"
    assert any(h["to"] == "failed" and h["reason"] == "node host-n1 forgotten" for h in got["history"])

    # Its Redis state is gone: every key of its own, its Redis user, every queued start; what may run there
    # gets a stop.
    assert not redis_client.keys(keys.node_prefix("n1") + "*")
    assert "corral-node-n1" not in redis_client.acl_users() and "corral-node-n2" in redis_client.acl_users()
    n1_jobs = [(job.func_name, job.args[0]) for job in queued(redis_client, "n1")]
    assert [name for name, _ in n1_jobs] == [jobs.STOP_TASKS, jobs.STOP_COMPONENT]
    assert n1_jobs[0][1]["task_ids"] == [on_n1["id"]] and n1_jobs[1][1]["component_id"] == "a"
    assert [job.func_name for job in queued(redis_client, "n2")] == [
        jobs.START_TASK,
        jobs.DEPLOY_COMPONENT,
        jobs.STOP_COMPONENT,
    ]

    # Out of the inventory and every verb on nodes; audited with what it ended.
    assert listed(client) == ["n2"]
    assert answer(client.get("/api/nodes/n1"), 404) == {"error": "Node not found"}
    assert answer(client.put("/api/nodes/n1/labels", json={"labels": {}}), 404) == {"error": "Node not found"}
    assert answer(client.patch("/api/nodes/n1/labels", json={"labels": {}}), 404) == {"error": "Node not found"}
    assert answer(client.post("/api/nodes/n1/forget-secret"), 404) == {"error": "Node not found"}
    assert forget(client, expect=404) == {"error": "Node not found"}
    (entry,) = audited("node.forgotten")
    assert (entry.target, entry.actor) == ("n1", "anonymous@127.0.0.1")
    assert json.loads(entry.detail) == {
        "hostname": "host-n1",
        "ip": Node.get_by_id("n1").ip,
        "tasks_lost": 1,
        "hosts_failed": 1,
        "components_failed": 1,
        "stops_queued": 2,
    }
    assert DeploymentTask.select().where(DeploymentTask.node == "n1").count() == 1  # history, not deleted


def test_a_forgotten_node_is_no_target_and_its_agent_joins_again_as_itself(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts={"labels": {"zone": "a"}})
    answer(client.put("/api/nodes/n1/labels", json={"labels": {"rack": "r7"}}))
    assert forget(client) == {**FORGOTTEN, "hostname": "web-01"}
    # A new machine under the old name: a target by hostname means it alone, not the old node as well.
    join(client, "n9", "web-01", "10.0.0.9")
    beat(redis_client, "n9")
    task = create(client, targets=["web-01"])
    assert [h["host_id"] for h in task["hosts"]] == ["n9"] and task["hosts"][0]["status"] == "pending"
    assert [h["host_id"] for h in create(client, targets=["zone=a"])["hosts"]] == [None]
    # Nothing places there: it is offline (its heartbeat is gone), whatever the lists say.
    answer(client.post("/api/task/task_group", json=template_body("app", ["/a"])))
    placed = answer(client.post("/api/task/task_group/deploy", json={"name": "app"}))["id"]
    assert {t["node"]["id"] for t in answer(client.get(f"/deployments/{placed}"))["tasks"]} == {"n9"}

    # Its secret was forgotten with it: its agent (whatever secret it holds now) joins as that node again.
    body = {
        "node_id": "n1",
        "hostname": "web-01",
        "ip": "10.0.0.1",
        "interval": 5.0,
        "protocol": PROTOCOL_VERSION,
        "facts": {"labels": {"zone": "a"}},
        "node_secret": "a-new-secret-of-sixteen-chars",
    }
    assert answer(client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN)))["node_id"] == "n1"
    beat(redis_client, "n1")
    back = answer(client.get("/api/nodes/n1"))
    # Back as a node first seen: the API's labels went with the forget, the agent's are its own.
    assert (back["status"], back["labels"], back["api_labels"]) == ("online", {"zone": "a"}, {})
    assert sorted(listed(client)) == ["n1", "n9"]
    assert [h["host_id"] for h in create(client, targets=["n1"])["hosts"]] == ["n1"]
    # Re-admitting it once more (its secret lost again) leaves it known.
    answer(client.post("/api/nodes/n1/forget-secret"))
    assert sorted(listed(client)) == ["n1", "n9"]
    assert forget(client, expect=409)["error"] == "node n1 (web-01) is online: stop its agent first"


def test_without_redis_nothing_is_forgotten(settings: Settings, client: FlaskClient) -> None:
    join(client, "n1", "web-01", "10.0.0.1")
    dead = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        got = dead.test_client().delete("/api/nodes/n1")
        assert got.status_code == 503 and "error" in got.get_json()
    finally:
        close_app(dead)
    assert listed(client) == ["n1"] and Node.get_by_id("n1").forgotten_at is None and not audited("node.forgotten")


def test_the_manual_node_list_leaves_a_forgotten_node_out(client: FlaskClient) -> None:
    join(client, "n1", "web-01", "10.0.0.1")
    forget(client)
    assert answer(client.get("/api/task/node")) == {"nodes": []}


def test_a_pin_to_a_forgotten_node_names_no_node(client: FlaskClient) -> None:
    join(client, "n1", "web-01", "10.0.0.1")
    forget(client)
    answer(client.post("/api/task/task_group", json=template_body("app", ["web-01:/a"])))
    refused = answer(client.post("/api/task/task_group/deploy", json={"name": "app"}), 409)
    assert "pinned to unknown node 'web-01'" in refused["error"]


def test_the_business_scheduler_does_not_count_a_forgotten_node(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    add_node(client, redis_client, "n1", online=False)
    forget(client)
    refused = deploy(client, business(component("a")), expect=409)
    assert refused["error"] == "no node fits component a: no node has joined"


def test_an_older_database_gains_the_forgotten_at_column(tmp_path: Path, redis_url: str) -> None:
    path = str(tmp_path / "old.db")
    db.init_db(path)
    db.database.execute_sql("ALTER TABLE node DROP COLUMN forgotten_at")
    forget_migration_history()  # made before the migration history
    db.database.execute_sql("DROP TABLE business_tombstones")
    db.database.execute_sql(
        "INSERT INTO node (id, hostname, ip, facts, labels, api_labels, interval, version, status, "
        "registered_at) VALUES ('n1', 'h', '1.2.3.4', '{}', '{}', '{}', 5, '', 1, '2026-01-01 00:00:00')"
    )
    db.close()
    db.init_db(path)
    try:
        assert "forgotten_at" in {c.name for c in db.database.get_columns("node")}
        assert "business_tombstones" in db.database.get_tables()
        assert Node.get_by_id("n1").forgotten_at is None
    finally:
        db.close()
