"""Fleet task REST API without the duties: create, start, cancel, list, detail, bad input, audit, jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from peewee import SqliteDatabase

from manager_api import db
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from manager_api.models import AuditLog, FleetTask, Node, TaskHost
from shared import jobs

from .tasks_helpers import add_node, create, detail, host, queued


@pytest.fixture
def fleet(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    """web-01, web-02 online (role=web), db-01 offline (role=db)."""
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1", {"role": "web"})
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2", {"role": "web"})
    add_node(client, redis_client, "n3", "db-01", "10.0.0.3", {"role": "db"}, online=False)


def test_create_starts_and_enqueues_run_command_on_each_node(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    task = create(
        client, name="uptime", command="uptime", targets=["role=web"], timeout=30, env={"A": "1"}, parameters="-p"
    )
    assert task["status"] == "running" and task["total_hosts"] == 2 and task["started_by"] == task["created_by"]
    assert [h["host_id"] for h in task["hosts"]] == ["n1", "n2"]
    assert all(h["status"] == "pending" for h in task["hosts"])
    assert task["progress"] == {
        "total": 2,
        "ended": 0,
        "succeeded": 0,
        "failed": 0,
        "running": 0,
        "pending": 2,
        "percent": 0,
    }
    for node_id in ("n1", "n2"):
        (job,) = queued(redis_client, node_id)
        assert job.func_name == jobs.RUN_COMMAND
        [payload] = job.args
        # The deadline is Redis's time at the dispatch plus the timeout: the agent never starts it later.
        deadline = payload.pop("deadline")
        assert 0 < deadline - float(redis_client.time()[0]) <= 31
        assert payload == {"task_id": task["task_id"], "command": "uptime", "timeout": 30.0, "env": {"A": "1"}}
    assert queued(redis_client, "n3") == []
    assert task["parameters"] == "-p" and task["timeout"] == 30 and task["targets"] == ["role=web"]
    assert task["created_at"].endswith("Z") and task["started_at"].endswith("Z") and task["finished_at"] is None


def test_unknown_and_offline_targets_are_dispatch_failed_rows(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    task = create(client, targets=["web-01", "10.0.0.2", "db-01", "ghost", "n1", "role=web"])
    assert len(task["hosts"]) == 4
    ghost = host(task, None, "ghost")
    assert (ghost["status"], ghost["error_message"], ghost["hostname"]) == (
        "dispatch_failed",
        "no node matches this target",
        "",
    )
    offline = host(task, "n3")
    assert (offline["status"], offline["error_message"]) == ("dispatch_failed", "node offline")
    assert host(task, "n1")["target"] == "web-01" and host(task, "n2")["target"] == "10.0.0.2"
    assert (task["total_hosts"], task["completed_hosts"], task["failed_hosts"]) == (4, 2, 2)
    assert len(queued(redis_client, "n1")) == 1 and queued(redis_client, "n3") == []


def test_targets_that_only_name_nodes_find_them_by_id_ip_and_hostname_in_any_case(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    # Names alone: only the nodes of those names are read (actions._target_nodes), with the same answer.
    task = create(client, targets=["WEB-01", "10.0.0.2", "n3", "ghost"])
    assert [(h["host_id"], h["target"], h["status"]) for h in task["hosts"]] == [
        ("n1", "WEB-01", "pending"),
        ("n2", "10.0.0.2", "pending"),
        ("n3", "n3", "dispatch_failed"),
        (None, "ghost", "dispatch_failed"),
    ]
    assert host(task, "n3")["error_message"] == "node offline"
    assert len(queued(redis_client, "n1")) == 1 and len(queued(redis_client, "n2")) == 1


def test_a_task_whose_every_target_fails_is_failed_at_once(client: FlaskClient, fleet: None) -> None:
    task = create(client, targets=["ghost", "db-01"])
    assert task["status"] == "failed" and task["finished_at"] is not None
    assert task["progress"]["percent"] == 100


def test_start_false_then_start_resolves_targets_at_start_time(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    task = create(client, start=False, targets=["role=db"])
    assert (task["status"], task["hosts"], task["started_at"]) == ("pending", [], None)
    assert queued(redis_client, "n3") == []
    add_node(client, redis_client, "n3", "db-01", "10.0.0.3", {"role": "db"})  # comes online meanwhile
    started = client.post(f"/api/tasks/{task['task_id']}/start")
    assert started.status_code == 200
    assert host(started.get_json(), "n3")["status"] == "pending"
    assert len(queued(redis_client, "n3")) == 1
    again = client.post(f"/api/tasks/{task['task_id']}/start")
    assert again.status_code == 409 and "pending" in again.get_json()["error"]
    assert len(queued(redis_client, "n3")) == 1


def test_cancel_ends_pending_hosts_and_sends_cancel_command(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    task = create(client, targets=["role=web"])
    response = client.post(f"/api/tasks/{task['task_id']}/cancel")
    assert response.status_code == 200
    canceled = response.get_json()
    assert canceled["status"] == "canceled" and canceled["canceled_at"] and canceled["canceled_by"]
    assert {h["status"] for h in canceled["hosts"]} == {"canceled"} and canceled["finished_at"]
    for node_id in ("n1", "n2"):
        run, cancel = queued(redis_client, node_id)
        assert (run.func_name, cancel.func_name) == (jobs.RUN_COMMAND, jobs.CANCEL_COMMAND)
        assert list(cancel.args) == [{"task_id": task["task_id"]}]
    again = client.post(f"/api/tasks/{task['task_id']}/cancel")
    assert again.status_code == 409 and "canceled" in again.get_json()["error"]
    assert client.post(f"/api/tasks/{task['task_id']}/start").status_code == 409


def test_cancel_a_pending_task(client: FlaskClient, fleet: None) -> None:
    task = create(client, start=False)
    canceled = client.post(f"/api/tasks/{task['task_id']}/cancel").get_json()
    assert canceled["status"] == "canceled" and canceled["finished_at"] and canceled["hosts"] == []


def test_list_pages_filters_newest_first(client: FlaskClient, fleet: None) -> None:
    ids = [create(client, name=f"job-{i}", start=i % 2 == 0)["task_id"] for i in range(5)]
    page = client.get("/api/tasks?page=1&size=2").get_json()
    assert (page["total"], page["page"], page["size"]) == (5, 1, 2)
    assert [t["task_id"] for t in page["tasks"]] == [ids[4], ids[3]]
    assert "hosts" not in page["tasks"][0] and page["tasks"][0]["progress"]["pending"] == 2
    last = client.get("/api/tasks?page=3&size=2").get_json()
    assert [t["task_id"] for t in last["tasks"]] == [ids[0]]
    pending = client.get("/api/tasks?status=pending").get_json()
    assert pending["total"] == 2 and {t["task_id"] for t in pending["tasks"]} == {ids[1], ids[3]}
    named = client.get("/api/tasks?name=job-3").get_json()
    assert [t["task_id"] for t in named["tasks"]] == [ids[3]]
    for bad in ("page=0", "size=0", "size=5000", "status=weird", "color=red"):
        response = client.get(f"/api/tasks?{bad}")
        assert response.status_code == 400, bad
        assert bad.split("=")[0] in response.get_json()["error"]


def test_detail_404_and_audit(client: FlaskClient, fleet: None) -> None:
    for path in ("/api/tasks/nope", "/api/tasks/" + "x" * 100, "/api/tasks/nope/output"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json() == {"error": "Task not found"}
    for action in ("start", "cancel"):
        assert client.post(f"/api/tasks/nope/{action}").status_code == 404
    task = create(client, created_by="alice")
    client.post(f"/api/tasks/{task['task_id']}/cancel")
    got = detail(client, task["task_id"])
    assert got["created_by"] == "alice" and got["started_by"].startswith("anonymous@")
    rows = AuditLog.select().where(AuditLog.target == task["task_id"]).order_by(AuditLog.id)
    assert [r.action for r in rows] == ["task.create", "task.start", "task.cancel"]
    assert all(r.actor.startswith("anonymous@") for r in rows)
    assert json.loads(rows[1].detail) == {"hosts": 2, "dispatch_failed": 0}


BAD_BODIES = [
    ({"command": ""}, "command"),
    ({"command": "   "}, "command"),
    ({"name": ""}, "name"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 7 * 24 * 3600 + 1}, "timeout"),
    ({"timeout": "30"}, "timeout"),
    ({"timeout": 2.5}, "timeout"),
    ({"targets": []}, "targets"),
    ({"targets": "web-01"}, "targets"),
    ({"targets": [""]}, "targets"),
    ({"targets": [3]}, "targets"),
    ({"env": {"A": 1}}, "env"),
    ({"start": "maybe"}, "start"),
    ({"hosts": ["a"]}, "hosts"),
]


@pytest.mark.parametrize(("change", "field"), BAD_BODIES)
def test_bad_bodies_are_400_naming_the_field_and_create_nothing(
    client: FlaskClient, fleet: None, change: dict[str, object], field: str
) -> None:
    body = {"name": "t", "command": "echo hi", "targets": ["*"], **change}
    response = client.post("/api/tasks", json=body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"].startswith(f"Invalid request format: {field}"), answer
    assert field in answer["errors"]
    assert FleetTask.select().count() == 0 and TaskHost.select().count() == 0


def test_missing_fields_bad_wait_and_non_object_bodies(client: FlaskClient, fleet: None) -> None:
    for missing in ("name", "command", "targets"):
        body = {k: v for k, v in {"name": "t", "command": "c", "targets": ["*"]}.items() if k != missing}
        response = client.post("/api/tasks", json=body)
        assert response.status_code == 400 and missing in response.get_json()["error"]
    for wait in ("-1", "301", "soon", "nan"):
        response = client.post(f"/api/tasks?wait={wait}", json={"name": "t", "command": "c", "targets": ["*"]})
        assert response.status_code == 400 and "wait" in response.get_json()["error"], wait
    assert client.post("/api/tasks", data="[1]").status_code == 400
    assert FleetTask.select().count() == 0


def test_labels_stored_at_join_and_shown_in_node_list(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1", {"role": "web", "dc": "east"})
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2", {"role": 3})  # not str -> str: ignored
    add_node(client, redis_client, "n3", "web-03", "10.0.0.3", ["role=web"])
    nodes = {n["id"]: n for n in client.get("/api/task/node").get_json()["nodes"]}
    assert nodes["n1"]["labels"] == {"dc": "east", "role": "web"}
    assert nodes["n2"]["labels"] == {} and nodes["n3"]["labels"] == {}
    task = create(client, targets=["dc=east"])
    assert [h["host_id"] for h in task["hosts"]] == ["n1"]


def test_a_database_from_before_gets_the_labels_column_and_task_tables(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "old.db"
    old = SqliteDatabase(str(path))
    old.execute_sql(
        "CREATE TABLE node (id VARCHAR(64) PRIMARY KEY, hostname VARCHAR(255) NOT NULL, ip VARCHAR(64) NOT NULL,"
        " facts TEXT NOT NULL, interval REAL NOT NULL, version VARCHAR(64) NOT NULL, status INTEGER NOT NULL,"
        " registered_at DATETIME NOT NULL, last_seen DATETIME)"
    )
    old.execute_sql(
        "INSERT INTO node VALUES ('old', 'legacy', '10.9.9.9', '{}', 5.0, '', 1, '2024-01-01 00:00:00', NULL)"
    )
    old.close()
    app = create_app(Settings(db_path=str(path), redis_url=redis_url))
    try:
        client = app.test_client()
        assert client.get("/api/task/node").get_json()["nodes"][0]["labels"] == {}
        assert Node.get_by_id("old").labels == "{}"
        task = create(client, targets=["legacy"])
        assert host(task, "old")["error_message"] == "node offline"
    finally:
        close_app(app)
        db.close()
