"""An operator token's scope (issue 15), checked by the services: its node query bounds the nodes a fleet task,
a schedule, a deployment, an app or a business may reach, and its allowlist the commands they may run."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.models import App, AuditLog, Business, DeploymentTask, FleetTask, Schedule
from manager_api.services import access
from manager_api.services.access import pattern_matches
from manager_api.services.schedules import actions as schedules
from shared.api import bearer

from . import app_helpers, business_helpers
from .conftest import answer, template_body
from .tasks_helpers import queued

SCOPE = "labels.zone:a"


@pytest.fixture
def fleet(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    """n1 in zone a (the operator's), n2 in zone b."""
    business_helpers.add_node(client, redis_client, "n1", labels={"zone": "a"})
    business_helpers.add_node(client, redis_client, "n2", labels={"zone": "b"})


@pytest.fixture
def operator(client: FlaskClient, fleet: None) -> dict[str, str]:
    body = {
        "name": "ops-a",
        "role": "operator",
        "nodeQuery": SCOPE,
        "commands": ["echo *", "/bin/echo *", "systemctl status *"],
    }
    return bearer(answer(client.post("/api/tokens", json=body), 201)["token"])


def post(client: FlaskClient, path: str, body: Any, headers: dict[str, str], expect: int) -> dict[str, Any]:
    return answer(client.post(path, json=body, headers=headers), expect)


def task(targets: list[str], command: str = "echo hi", **extra: Any) -> dict[str, Any]:
    return {"name": "t", "command": command, "targets": targets, **extra}


def test_a_fleet_task_reaching_beyond_the_node_query_is_refused_naming_the_nodes(
    client: FlaskClient, redis_client: redis_lib.Redis, operator: dict[str, str]
) -> None:
    refused = post(client, "/api/tasks", task(["*"]), operator, 403)
    assert refused["nodes"] == ["n2"] and "n2" in refused["error"] and "outside its node query" in refused["error"]
    refused = post(client, "/api/tasks", task(["host-n2"]), operator, 403)
    assert refused["nodes"] == ["n2"]
    assert FleetTask.select().count() == 0 and queued(redis_client, "n2") == []
    allowed = post(client, "/api/tasks", task(["n1"]), operator, 201)
    assert [h["host_id"] for h in allowed["hosts"]] == ["n1"]
    assert post(client, "/api/tasks", task([f"query:{SCOPE}"]), operator, 201)["total_hosts"] == 1


def test_a_pending_task_started_by_an_operator_is_checked_at_its_start(
    client: FlaskClient, operator: dict[str, str]
) -> None:
    pending = answer(client.post("/api/tasks", json=task(["*"], start=False)), 201)  # made by the open API (admin)
    assert "n2" in post(client, f"/api/tasks/{pending['task_id']}/start", None, operator, 403)["error"]
    assert post(client, f"/api/tasks/{pending['task_id']}/cancel", None, operator, 200)["status"] == "canceled"


def test_a_command_outside_the_allowlist_is_refused_naming_it(client: FlaskClient, operator: dict[str, str]) -> None:
    refused = post(client, "/api/tasks", task(["n1"], "rm -rf /"), operator, 403)
    assert refused["error"] == "Token 'ops-a' may not run command 'rm -rf /': not in its allowlist"
    # A wildcard never stands for a shell's control characters: the allowed prefix cannot smuggle a command in.
    for sneaky in ("echo hi; rm -rf /", "echo $(id)", "echo `id`", "echo hi && reboot", "echo hi | sh"):
        assert "not in its allowlist" in post(client, "/api/tasks", task(["n1"], sneaky), operator, 403)["error"]
    env = post(client, "/api/tasks", task(["n1"], env={"LD_PRELOAD": "/tmp/x.so"}), operator, 403)
    assert "may not set env" in env["error"]
    # A secret env would change what the command runs just the same; the refusal names it, never its value.
    secret = post(client, "/api/tasks", task(["n1"], secretEnv={"LD_PRELOAD": "/tmp/s3cret.so"}), operator, 403)
    assert "may not set env" in secret["error"] and "LD_PRELOAD" in secret["error"]
    assert "s3cret" not in secret["error"]
    schedule = {"name": "s", "command": "echo hi", "targets": ["n1"], "cron": "* * * * *"}
    refused = post(client, "/api/schedules", {**schedule, "secretEnv": {"TOKEN": "s3cret"}}, operator, 403)
    assert "may not set env" in refused["error"] and "s3cret" not in refused["error"]
    assert FleetTask.select().count() == 0 and Schedule.select().count() == 0
    post(client, "/api/tasks", task(["n1"], "systemctl status nginx"), operator, 201)


def test_glob_patterns_match_whole_commands() -> None:
    assert pattern_matches("echo *", "echo hello world")
    assert pattern_matches("uptime", "uptime") and not pattern_matches("uptime", "uptime -p")
    assert pattern_matches("ls ?", "ls a") and not pattern_matches("ls ?", "ls ab")
    assert not pattern_matches("echo *", "echo a\nreboot")
    assert pattern_matches("echo a; echo b", "echo a; echo b")  # written in the pattern, a ; is allowed


def test_schedules_are_checked_at_creation_and_an_admins_schedule_is_out_of_reach(
    client: FlaskClient, operator: dict[str, str]
) -> None:
    body = {**task(["*"]), "interval": 60}
    assert post(client, "/api/schedules", body, operator, 403)["nodes"] == ["n2"]
    assert (
        "allowlist"
        in post(client, "/api/schedules", {**body, "targets": ["n1"], "command": "id"}, operator, 403)["error"]
    )
    assert Schedule.select().count() == 0
    post(client, "/api/schedules", {**body, "name": "mine", "targets": ["n1"]}, operator, 201)
    fleet_wide = answer(client.post("/api/schedules", json={**body, "name": "admins"}), 201)
    for verb in ("pause", "resume"):
        assert post(client, f"/api/schedules/{fleet_wide['id']}/{verb}", None, operator, 403)["nodes"] == ["n2"]
    assert client.delete(f"/api/schedules/{fleet_wide['id']}", headers=operator).status_code == 403


def test_a_schedules_firings_keep_to_its_creators_scope(
    client: FlaskClient, redis_client: redis_lib.Redis, operator: dict[str, str]
) -> None:
    """A node that comes to match an operator's schedule later but lies outside the token's node query is never
    reached: each firing is checked again against the scope kept with the schedule."""
    body = {**task(["host-n3"]), "name": "later", "interval": 60}
    later = post(client, "/api/schedules", body, operator, 201)  # no host-n3 yet: it reaches nothing today
    mine = post(client, "/api/schedules", {**body, "name": "mine", "targets": ["n1"]}, operator, 201)
    business_helpers.add_node(client, redis_client, "n3", labels={"zone": "b"})  # host-n3 appears, in zone b

    row = Schedule.get_by_id(later["id"])
    assert schedules.fire(redis_client, row.id, row.version, 3) is None
    assert FleetTask.select().count() == 0 and queued(redis_client, "n3") == []
    refused = AuditLog.get(AuditLog.action == "schedule.fire_refused")
    assert refused.target == later["id"] and "n3" in json.loads(refused.detail)["reason"]
    assert access.current() is None  # the runner's thread goes back to no identity

    row = Schedule.get_by_id(mine["id"])
    task_id = schedules.fire(redis_client, row.id, row.version, 3)
    assert task_id is not None
    assert [h["host_id"] for h in answer(client.get(f"/api/tasks/{task_id}"))["hosts"]] == ["n1"]
    # An admin's schedule carries no scope: it reaches every node its targets do.
    fleet_wide = answer(client.post("/api/schedules", json={**body, "name": "admins", "targets": ["*"]}), 201)
    row = Schedule.get_by_id(fleet_wide["id"])
    assert row.scope == "" and schedules.fire(redis_client, row.id, row.version, 3) is not None


def test_a_deployment_is_placed_on_the_operators_nodes_and_its_commands_checked(
    client: FlaskClient, operator: dict[str, str]
) -> None:
    post(client, "/api/task/task_group", template_body("ok", ["echo a"], ["echo b"]), operator, 200)
    post(client, "/api/task/task_group", template_body("bad", ["reboot"]), operator, 200)
    assert "reboot" in post(client, "/api/task/task_group/deploy", {"name": "bad"}, operator, 403)["error"]
    deployed = post(client, "/api/task/task_group/deploy", {"name": "ok"}, operator, 200)
    placed = DeploymentTask.select().where(DeploymentTask.deployment == deployed["id"])
    assert {task.node_id for task in placed} == {"n1"}  # two groups, both on the operator's one node
    # A deployment pinned to n2 (an admin's) is out of the operator's reach, to deploy or to stop.
    answer(client.post("/api/task/task_group", json=template_body("pinned", ["host-n2:/bin/echo x"])), 200)
    assert post(client, "/api/task/task_group/deploy", {"name": "pinned"}, operator, 409)["error"].startswith(
        "Cannot deploy"
    )
    theirs = answer(client.post("/api/task/task_group/deploy", json={"name": "pinned"}))
    assert post(client, "/api/task/task_group/stop", {"id": theirs["id"]}, operator, 403)["nodes"] == ["n2"]


def test_an_operators_app_keeps_to_its_nodes_and_an_admins_app_is_out_of_reach(
    client: FlaskClient, operator: dict[str, str]
) -> None:
    body = app_helpers.app_body("web", toProcess="echo", args=["serving"], instances=1)
    created = post(client, "/api/apps", body, operator, 201)
    assert App.get_by_id("web").created_by.startswith("token:ops-a@")
    assert created["definition"]["nodeQuery"] == f"(*) AND ({SCOPE})"
    assert {i["node_id"] for i in app_helpers.wanted(created)} == {"n1"}
    # Scaling past the operator's nodes finds no other node: the stored query keeps it there.
    scaled = post(client, "/api/apps/web/scale", {"instances": 2}, operator, 200)
    assert {i["node_id"] for i in app_helpers.wanted(scaled)} == {"n1"}
    # Posted back as GET shows it, the definition is not narrowed twice.
    answer(
        client.put("/api/apps/web", json={**body, "nodeQuery": created["definition"]["nodeQuery"]}, headers=operator)
    )
    assert App.get_by_id("web").spec.count(SCOPE) == 1
    assert "allowlist" in post(client, "/api/apps", app_helpers.app_body("x", toProcess="sh"), operator, 403)["error"]
    secret = app_helpers.app_body("s", toProcess="echo", args=["x"], secretEnvs={"LD_PRELOAD": "/tmp/s3cret.so"})
    refused = post(client, "/api/apps", secret, operator, 403)["error"]
    assert "may not set env" in refused and "s3cret" not in refused
    put = client.put("/api/apps/web", json={**body, "secretEnvs": {"LD_PRELOAD": "/tmp/s3cret.so"}}, headers=operator)
    assert put.status_code == 403 and "may not set env" in put.get_json()["error"]
    answer(client.post("/api/apps", json=app_helpers.app_body("admins", toProcess="echo", args=["x"])), 201)
    for verb in ("restart", "stop"):
        assert "reaches beyond" in post(client, f"/api/apps/admins/{verb}", None, operator, 403)["error"]
    assert client.delete("/api/apps/admins", headers=operator).status_code == 403


def test_a_business_is_placed_only_on_the_operators_nodes(client: FlaskClient, operator: dict[str, str]) -> None:
    parts = [business_helpers.component(c, command="echo", args=[c]) for c in ("a", "b", "c")]
    deployed = post(client, "/api/businesses", business_helpers.business(*parts), operator, 201)
    shown = business_helpers.detail(client, deployed["business_id"])
    assert {c["node_id"] for c in shown["components"]} == {"n1"}
    image = business_helpers.component(
        "img", type="docker", image_url="https://registry.example/x.tar", image_name="x:1", command=""
    )
    assert "allowlist" in post(client, "/api/businesses", business_helpers.business(image), operator, 403)["error"]
    beyond = business_helpers.component(
        "big", command="echo", args=["big"], resource_requirements={"cpu_cores": 4, "memory_mb": 1}
    )
    taken = post(client, "/api/businesses", business_helpers.business(beyond, business_name="x"), operator, 409)
    assert "n2" not in str(taken.get("plan", ""))
    secret = business_helpers.component(
        "s", command="echo", args=["s"], secret_environment_variables={"LD_PRELOAD": "/tmp/s3cret.so"}
    )
    refused = post(client, "/api/businesses", business_helpers.business(secret, business_name="s"), operator, 403)
    assert "may not set env" in refused["error"] and "s3cret" not in refused["error"]
    assert Business.select().count() == 1


def test_node_labels_and_tags_outside_the_query_are_refused(client: FlaskClient, operator: dict[str, str]) -> None:
    assert client.put("/api/nodes/n2/tags", json={"tags": ["x"]}, headers=operator).status_code == 403
    assert client.patch("/api/nodes/n2/labels", json={"labels": {"zone": "a"}}, headers=operator).status_code == 403
    assert client.put("/api/nodes/n1/tags", json={"tags": ["x"]}, headers=operator).status_code == 200
