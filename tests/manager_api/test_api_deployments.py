"""Deploy, query, stop and detail through the real app; jobs inspected on the real RQ queues."""

from __future__ import annotations

import json
import zlib

import redis as redis_lib
from flask.testing import FlaskClient
from rq import Queue
from rq.serializers import JSONSerializer

from manager_api.models import AuditLog, Deployment, DeploymentTask
from shared import jobs, keys
from shared.defaults import STOP_GRACE_SECONDS
from shared.messages import StartTaskSchema, StopTasksSchema

from .conftest import join, online_node, template_body


def queue(redis_client: redis_lib.Redis, node_id: str) -> Queue:
    return Queue(keys.node_queue(node_id), connection=redis_client, serializer=JSONSerializer)


def deploy(client: FlaskClient, name: str) -> str:
    response = client.post("/api/task/task_group/deploy", json={"name": name})
    assert response.status_code == 200, response.get_json()
    assert list(response.get_json()) == ["id"]
    return str(response.get_json()["id"])


def test_deploy_enqueues_start_jobs_on_the_node_queue(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    client.post("/api/task/task_group", json=template_body("app", ["/bin/sleep 30", "10.0.0.1:/opt/x.sh -v"]))
    deployment_id = deploy(client, "app")
    queued = queue(redis_client, "n1").get_jobs()
    assert [job.func_name for job in queued] == [jobs.START_TASK, jobs.START_TASK]
    payloads = [job.args[0] for job in queued]
    assert all(StartTaskSchema().load(p) == p for p in payloads)
    tasks = {t.id: t for t in DeploymentTask.select()}
    assert {p["task_id"] for p in payloads} == set(tasks)
    assert sorted(p["command"] for p in payloads) == ["/bin/sleep 30", "/opt/x.sh -v"]
    assert {p["deployment_id"] for p in payloads} == {deployment_id}
    # Stored JSON, not pickle: an agent in any language could read it.
    raw = redis_client.hget(queued[0].key, "data")
    assert raw is not None
    func_name, _instance, args, _kwargs = json.loads(zlib.decompress(raw))
    assert (func_name, args) == (jobs.START_TASK, [payloads[0]])
    assert client.post("/api/task/task_group/query", json={"id": deployment_id}).get_json() == {
        "id": deployment_id,
        "status": 0,
        "state": "PENDING",
    }
    assert AuditLog.select().where(AuditLog.action == "deployment.create").count() == 1


def test_groups_are_spread_and_keep_their_tasks_together(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1", cpu=5, memory=5)
    online_node(client, redis_client, "n2", "10.0.0.2", cpu=5, memory=5)
    join(client, "n3", "host-n3", "10.0.0.3")  # never heard from: offline
    client.post("/api/task/task_group", json=template_body("app", ["/a", "/b"], ["/c", "/d"]))
    deployment_id = deploy(client, "app")
    detail = client.get(f"/deployments/{deployment_id}").get_json()
    by_group: dict[int, set[str]] = {}
    for task in detail["tasks"]:
        by_group.setdefault(task["group"], set()).add(task["node"]["id"])
    assert by_group[0] != by_group[1] and all(len(v) == 1 for v in by_group.values())
    assert "n3" not in by_group[0] | by_group[1]
    assert len(queue(redis_client, "n1").get_jobs()) == len(queue(redis_client, "n2").get_jobs()) == 2


def test_deploy_refusals_write_nothing(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    client.post("/api/task/task_group", json=template_body("free", ["/a"]))
    client.post("/api/task/task_group", json=template_body("pinned", ["10.0.0.9:/a"]))
    no_node = client.post("/api/task/task_group/deploy", json={"name": "free"})
    assert no_node.status_code == 409 and "no online node" in no_node.get_json()["error"]
    join(client, "n9", "db-9", "10.0.0.9")
    offline_pin = client.post("/api/task/task_group/deploy", json={"name": "pinned"})
    assert offline_pin.status_code == 409
    assert "'10.0.0.9'" in offline_pin.get_json()["error"] and "offline" in offline_pin.get_json()["error"]
    missing = client.post("/api/task/task_group/deploy", json={"name": "missing"})
    assert (missing.status_code, missing.get_json()) == (404, {"error": "Business template not found"})
    assert Deployment.select().count() == 0 and DeploymentTask.select().count() == 0
    assert queue(redis_client, "n9").count == 0


def test_pinned_task_goes_to_its_node(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1", cpu=1, memory=1)
    online_node(client, redis_client, "n2", "10.0.0.2", cpu=90, memory=90)
    client.post("/api/task/task_group", json=template_body("app", ["/free", "host-n2:/pinned"]))
    deployment_id = deploy(client, "app")
    tasks = client.get(f"/api/deployments/{deployment_id}").get_json()["tasks"]
    assert {t["node"]["id"] for t in tasks} == {"n2"}
    assert [t["host"] for t in tasks] == [None, "host-n2"]
    assert [t["command"] for t in tasks] == ["/free", "/pinned"]


def test_detail_shape(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    client.post("/api/task/task_group", json=template_body("app", ["/bin/true"]))
    deployment_id = deploy(client, "app")
    detail = client.get(f"/deployments/{deployment_id}").get_json()
    assert set(detail) == {"id", "name", "state", "status", "created_at", "stopped_at", "tasks"}
    assert (detail["id"], detail["name"], detail["state"], detail["status"]) == (
        deployment_id,
        "app",
        "PENDING",
        0,
    )
    (task,) = detail["tasks"]
    assert set(task) == {
        "id",
        "name",
        "group",
        "command",
        "host",
        "node",
        "pid",
        "state",
        "exit_code",
        "error",
        "started_at",
        "ended_at",
    }
    assert task["node"] == {"id": "n1", "hostname": "host-n1", "ip": "10.0.0.1"}
    assert client.get("/deployments/unknown").status_code == 404
    assert client.get("/deployments/" + "x" * 100).get_json() == {"error": "Deployment not found"}


def test_stop_marks_stopping_and_enqueues_one_stop_per_node(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    online_node(client, redis_client, "n2", "10.0.0.2")
    client.post("/api/task/task_group", json=template_body("app", ["/a", "/b"], ["/c"]))
    deployment_id = deploy(client, "app")
    response = client.post("/api/task/task_group/stop", json={"id": deployment_id})
    assert (response.status_code, response.get_json()) == (200, {"id": deployment_id})
    assert client.post("/api/task/task_group/query", json={"id": deployment_id}).get_json() == {
        "id": deployment_id,
        "status": 1,
        "state": "STOPPING",
    }
    assert {t.state for t in DeploymentTask.select()} == {"STOPPING"}
    stops = []
    for node_id in ("n1", "n2"):
        jobs_here = queue(redis_client, node_id).get_jobs()
        assert [j.func_name for j in jobs_here][-1] == jobs.STOP_TASKS
        payload = jobs_here[-1].args[0]
        assert StopTasksSchema().load(payload)["grace_seconds"] == STOP_GRACE_SECONDS
        stops += payload["task_ids"]
    assert sorted(stops) == sorted(t.id for t in DeploymentTask.select())


def test_stop_of_a_stopped_deployment_is_a_no_op(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    client.post("/api/task/task_group", json=template_body("app", ["/a"]))
    deployment_id = deploy(client, "app")
    DeploymentTask.update(state="STOPPED").execute()
    Deployment.update(state="STOPPED").execute()
    before = queue(redis_client, "n1").count
    response = client.post("/api/task/task_group/stop", json={"id": deployment_id})
    assert (response.status_code, response.get_json()) == (200, {"id": deployment_id})
    assert queue(redis_client, "n1").count == before


def test_unknown_and_malformed_ids(client: FlaskClient) -> None:
    for path in ("/api/task/task_group/query", "/api/task/task_group/stop"):
        unknown = client.post(path, json={"id": "no-such-id"})
        assert (unknown.status_code, unknown.get_json()) == (404, {"error": "Deployment not found"})
        for body, mentions in (
            ({"id": 12}, "id: Not a valid string"),
            ({}, "id"),
            ({"id": ""}, "id"),
            ({"id": "x" * 65}, "id"),
            ({"id": "a", "x": 1}, "x: Unknown field"),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 400, (path, body)
            assert mentions in response.get_json()["error"]


def test_enqueue_failure_marks_tasks_failed_and_answers_503(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    client.post("/api/task/task_group", json=template_body("app", ["/a", "/b"]))
    # A key of the wrong type where the queue list lives: Redis itself refuses the push.
    redis_client.set(queue(redis_client, "n1").key, "not a list")
    response = client.post("/api/task/task_group/deploy", json={"name": "app"})
    assert response.status_code == 503
    body = response.get_json()
    assert "error" in body and body["id"]
    tasks = list(DeploymentTask.select())
    assert {t.state for t in tasks} == {"FAILED"} and all("enqueue" in (t.error or "") for t in tasks)
    assert client.post("/api/task/task_group/query", json={"id": body["id"]}).get_json()["status"] == 1
