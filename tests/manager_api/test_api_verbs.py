"""Templates and deployments listed, shown and deleted; conflicts answered 409 without the 400 prefix."""

from __future__ import annotations

import json
import time
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.models import AuditLog, Deployment, DeploymentTask, Schedule, Template
from tests.support import wait_until

from .conftest import answer, online_node, publish_task_event, template_body


def audited(action: str) -> list[AuditLog]:
    return list(AuditLog.select().where(AuditLog.action == action).order_by(AuditLog.id))


def make_template(client: FlaskClient, name: str, *groups: list[str]) -> None:
    answer(client.post("/api/task/task_group", json=template_body(name, *(groups or (["/bin/true"],)))))


def deploy(client: FlaskClient, name: str) -> str:
    return str(answer(client.post("/api/task/task_group/deploy", json={"name": name}))["id"])


def tasks_of(deployment_id: str) -> list[str]:
    return [t.id for t in DeploymentTask.select().where(DeploymentTask.deployment == deployment_id)]


def report(redis_client: redis_lib.Redis, deployment_id: str, task_id: str, state: str, **extra: Any) -> None:
    """A task event as the agent of n1 sends it."""
    event = {"task_id": task_id, "deployment_id": deployment_id, "node_id": "n1", "state": state, "at": time.time()}
    publish_task_event(redis_client, {**event, **extra})


def state_of(deployment_id: str) -> str:
    return str(Deployment.get_by_id(deployment_id).state)


def stopped(client: FlaskClient, redis_client: redis_lib.Redis, deployment_id: str) -> None:
    """Stop a deployment and report its tasks killed, as its agent does; wait until it reads STOPPED."""
    answer(client.post("/api/task/task_group/stop", json={"id": deployment_id}))
    for task_id in tasks_of(deployment_id):
        report(redis_client, deployment_id, task_id, "STOPPED", exit_code=-15)
    wait_until(lambda: state_of(deployment_id) == "STOPPED", what=f"deployment {deployment_id} STOPPED")


# -- templates -------------------------------------------------------------------------------------


def test_template_list_is_sorted_by_name_with_counts(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    make_template(client, "web", ["/a", "/b"], ["/c"])
    make_template(client, "batch", ["/x"])
    make_template(client, "数据处理", ["/y"])
    deploy(client, "web"), deploy(client, "web")
    listed = answer(client.get("/api/templates"))
    assert [t["name"] for t in listed["templates"]] == ["batch", "web", "数据处理"]
    assert (listed["total"], listed["page"], listed["page_size"]) == (3, 1, 20)
    web = listed["templates"][1]
    assert {k: web[k] for k in ("groups", "tasks", "deployments")} == {"groups": 2, "tasks": 3, "deployments": 2}
    assert web["created_at"].endswith("Z") and listed["templates"][0]["deployments"] == 0
    assert [t["name"] for t in answer(client.get("/api/templates?name=e"))["templates"]] == ["web"]
    assert [t["name"] for t in answer(client.get("/api/templates?name=数据"))["templates"]] == ["数据处理"]
    assert answer(client.get("/api/templates?name=nope")) == {"templates": [], "total": 0, "page": 1, "page_size": 20}
    assert answer(client.get("/api/templates?colour=red"), 400)["error"].startswith("Invalid request format: colour")


def test_template_detail_answers_as_the_manual_query(client: FlaskClient) -> None:
    for name in ("我的数据处理任务", "team/nightly"):
        make_template(client, name, ["10.0.0.9:/opt/x.sh -v", "/b"])
        queried = answer(client.post("/api/task/query", json={"name": name}))
        assert answer(client.get(f"/api/templates/{name}")) == queried
        assert queried["task_groups"][0]["tasks"][0]["config"] == {"command": "/opt/x.sh -v", "host": "10.0.0.9"}
    assert answer(client.get("/api/templates/team%2Fnightly"))["name"] == "team/nightly"
    assert answer(client.get("/api/templates/nope"), 404) == {"error": "Business template not found"}
    assert answer(client.get(f"/api/templates/{'x' * 300}"), 404) == {"error": "Business template not found"}


def test_template_delete_refuses_while_deployments_use_it(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    make_template(client, "web", ["/a"])
    deployment_id = deploy(client, "web")
    live = answer(client.delete("/api/templates/web"), 409)
    assert live["error"].startswith("Business template 'web' has 1 live deployment(s): stop them")
    assert "POST /api/task/task_group/stop" in live["error"] and "DELETE /api/deployments/{id}" in live["error"]
    assert not live["error"].startswith("Invalid request format")
    assert (live["live"], live["ended"], live["deployments"]) == (1, 0, [deployment_id])

    stopped(client, redis_client, deployment_id)
    # Ended deployments are history that names the template: kept, and the template with them.
    ended = answer(client.delete("/api/templates/web"), 409)
    assert ended["error"] == (
        "Business template 'web' is used by 1 ended deployment(s) kept as history: "
        "delete them first (DELETE /api/deployments/{id})"
    )
    assert (ended["live"], ended["ended"], ended["deployments"]) == (0, 1, [deployment_id])
    assert Template.select().count() == 1 and not audited("template.deleted")

    answer(client.delete(f"/api/deployments/{deployment_id}"))
    assert answer(client.delete("/api/templates/web")) == {"status": "success", "name": "web"}
    assert answer(client.get("/api/templates/web"), 404) == {"error": "Business template not found"}
    assert answer(client.post("/api/task/query", json={"name": "web"}), 404)["error"] == "Business template not found"
    (entry,) = audited("template.deleted")
    assert (entry.target, entry.actor, json.loads(entry.detail)) == (
        "web",
        "anonymous@127.0.0.1",
        {"groups": 1, "tasks": 1},
    )
    # The name is free again.
    make_template(client, "web", ["/other"])


def test_template_delete_of_an_unknown_name_is_404(client: FlaskClient) -> None:
    assert answer(client.delete("/api/templates/nope"), 404) == {"error": "Business template not found"}
    assert answer(client.delete(f"/api/templates/{'x' * 300}"), 404) == {"error": "Business template not found"}
    make_template(client, "team/nightly")
    assert answer(client.delete("/api/templates/team%2Fnightly")) == {"status": "success", "name": "team/nightly"}
    assert len(audited("template.deleted")) == 1


# -- deployments -----------------------------------------------------------------------------------


def test_deployment_list_newest_first_with_task_states(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    make_template(client, "web", ["/a", "/b"], ["/c"])
    make_template(client, "batch", ["/x"])
    first, second, third = deploy(client, "web"), deploy(client, "batch"), deploy(client, "web")
    running = tasks_of(first)[:2]
    for task_id in running:
        report(redis_client, first, task_id, "RUNNING", pid=100)
    # Both reports applied, not only the first (which already makes the deployment RUNNING).
    wait_until(
        lambda: (
            DeploymentTask.select().where(DeploymentTask.id.in_(running), DeploymentTask.state == "RUNNING").count()
            == 2
        ),
        what="both tasks RUNNING",
    )
    assert state_of(first) == "RUNNING"
    listed = answer(client.get("/api/deployments"))
    assert [d["id"] for d in listed["deployments"]] == [third, second, first]
    assert (listed["total"], listed["page"], listed["page_size"]) == (3, 1, 20)
    got = listed["deployments"][2]
    assert {k: got[k] for k in ("id", "name", "state", "status", "stopped_at", "task_count", "task_states")} == {
        "id": first,
        "name": "web",
        "state": "RUNNING",
        "status": 0,
        "stopped_at": None,
        "task_count": 3,
        "task_states": {"RUNNING": 2, "PENDING": 1},
    }
    assert got["created_at"].endswith("Z")
    assert [d["id"] for d in answer(client.get("/api/deployments?state=RUNNING"))["deployments"]] == [first]
    assert [d["id"] for d in answer(client.get("/api/deployments?state=pending"))["deployments"]] == [third, second]
    assert [d["id"] for d in answer(client.get("/api/deployments?name=bat"))["deployments"]] == [second]
    bad = answer(client.get("/api/deployments?state=SLEEPING"), 400)
    assert bad["error"].startswith("Invalid request format: state: Must be one of") and "state" in bad["errors"]


def test_deployment_delete_waits_until_it_has_ended(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    make_template(client, "web", ["/a", "/b"])
    deployment_id = deploy(client, "web")
    pending = answer(client.delete(f"/api/deployments/{deployment_id}"), 409)
    assert pending["error"] == f"Deployment {deployment_id} is PENDING: stop it first: POST /api/task/task_group/stop"
    assert (pending["id"], pending["state"]) == (deployment_id, "PENDING")

    first, second = tasks_of(deployment_id)
    report(redis_client, deployment_id, first, "RUNNING", pid=100)
    report(redis_client, deployment_id, second, "FAILED", exit_code=3)
    wait_until(lambda: state_of(deployment_id) == "FAILED", what="deployment FAILED")
    # FAILED, yet one task still runs: its record is what a stop needs.
    failed = answer(client.delete(f"/deployments/{deployment_id}"), 409)
    assert failed["error"].startswith(f"Deployment {deployment_id} is FAILED but tasks of it run: stop it first")

    answer(client.post("/api/task/task_group/stop", json={"id": deployment_id}))
    stopping = answer(client.delete(f"/api/deployments/{deployment_id}"), 409)
    assert stopping["error"].startswith(f"Deployment {deployment_id} is STOPPING: delete it once it is STOPPED")
    assert DeploymentTask.select().count() == 2 and not audited("deployment.deleted")

    report(redis_client, deployment_id, first, "STOPPED", exit_code=-15)
    wait_until(lambda: state_of(deployment_id) == "STOPPED", what="deployment STOPPED")
    deleted = answer(client.delete(f"/api/deployments/{deployment_id}"))
    assert deleted == {"id": deployment_id, "status": "success", "message": "deleted"}
    assert Deployment.select().count() == 0 and DeploymentTask.select().count() == 0
    assert answer(client.get(f"/deployments/{deployment_id}"), 404) == {"error": "Deployment not found"}
    (entry,) = audited("deployment.deleted")
    assert (entry.target, entry.actor) == (deployment_id, "anonymous@127.0.0.1")
    assert json.loads(entry.detail) == {"template": "web", "state": "STOPPED", "tasks": 2}
    # A late report of one of its tasks is ignored, not an error.
    report(redis_client, deployment_id, first, "STOPPED", exit_code=-15)


def test_deployment_delete_through_the_manual_path_and_unknown_ids(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    make_template(client, "batch", ["/x"])
    deployment_id = deploy(client, "batch")
    (task_id,) = tasks_of(deployment_id)
    report(redis_client, deployment_id, task_id, "COMPLETED", exit_code=0)
    wait_until(lambda: state_of(deployment_id) == "COMPLETED", what="deployment COMPLETED")
    assert answer(client.delete(f"/deployments/{deployment_id}"))["message"] == "deleted"
    for path in (f"/deployments/{deployment_id}", "/api/deployments/nope", f"/api/deployments/{'x' * 100}"):
        assert answer(client.delete(path), 404) == {"error": "Deployment not found"}
    assert len(audited("deployment.deleted")) == 1


# -- error wording ---------------------------------------------------------------------------------


def test_a_taken_schedule_name_is_a_conflict_not_a_format_error(client: FlaskClient) -> None:
    body = {"name": "nightly", "command": "x", "targets": ["*"], "interval": 60}
    answer(client.post("/api/schedules", json=body), 201)
    taken = answer(client.post("/api/schedules", json={**body, "name": " nightly "}), 409)
    assert taken["error"] == "Schedule name 'nightly' is taken"
    assert taken["errors"] == {"name": ["a schedule named 'nightly' already exists"]}
    assert Schedule.select().count() == 1
