"""Workflows REST API with the real duties applying agents' reports: waves, policies, targets, cancel, bad input."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api import db
from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.launcher.main import main as manager_main
from manager_api.models import AuditLog, FleetTask, Workflow, WorkflowStep, utcnow
from manager_api.services import secret_store
from manager_api.services.workflows import actions as workflow_actions
from manager_api.services.workflows import advance
from shared.api import bearer
from tests.support import wait_until

from . import business_helpers
from .conftest import answer
from .tasks_helpers import add_node, finish, queued


def step(name: str, *depends_on: str, on_failed: str = "stop", targets: tuple[str, ...] = ("*",)) -> dict[str, Any]:
    return {
        "name": name,
        "depends_on": list(depends_on),
        "on_failed_dependency": on_failed,
        "task": {"command": f"echo {name}", "targets": list(targets), "timeout": 30},
    }


def post(client: FlaskClient, steps: list[dict[str, Any]], expect: int = 201, name: str = "wf") -> dict[str, Any]:
    return answer(client.post("/api/workflows", json={"name": name, "steps": steps}), expect)


def show(client: FlaskClient, workflow_id: str) -> dict[str, Any]:
    return answer(client.get(f"/api/workflows/{workflow_id}"))


def steps_of(client: FlaskClient, workflow_id: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in show(client, workflow_id)["steps"]}


def started(client: FlaskClient, workflow_id: str, name: str) -> str:
    """The task id of step ``name`` once it started."""
    task_id: str = wait_until(lambda: steps_of(client, workflow_id)[name]["task_id"], what=f"step {name} started")
    return task_id


def run(redis_client: redis_lib.Redis, task_id: str, nodes: dict[str, int]) -> None:
    """Act as the agents: each node of ``nodes`` runs the task and exits with its code."""
    for node_id, code in nodes.items():
        finish(redis_client, task_id, node_id, exit_code=code)


def two_nodes(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2")


def ended(client: FlaskClient, workflow_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: (body := show(client, workflow_id))["finished_at"] and body, what="the workflow ended"
    )
    return found


def test_a_diamond_runs_in_waves_and_completes(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    two_nodes(client, redis_client)
    wf = post(client, [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")])
    assert wf["status"] == "running" and wf["progress"]["text"] == "0/4"
    shown = {s["name"]: s for s in wf["steps"]}
    assert shown["a"]["status"] == "running" and shown["a"]["task_url"] == f"/api/tasks/{shown['a']['task_id']}"
    assert [shown[n]["status"] for n in "bcd"] == ["pending"] * 3
    run(redis_client, shown["a"]["task_id"], {"n1": 0, "n2": 0})
    b, c = started(client, wf["id"], "b"), started(client, wf["id"], "c")  # both at once: parallel
    assert steps_of(client, wf["id"])["d"]["status"] == "pending"
    run(redis_client, b, {"n1": 0, "n2": 0})
    assert steps_of(client, wf["id"])["d"]["status"] == "pending"  # c has not ended
    run(redis_client, c, {"n1": 0, "n2": 0})
    run(redis_client, started(client, wf["id"], "d"), {"n1": 0, "n2": 0})
    body = ended(client, wf["id"])
    assert body["status"] == "completed" and body["progress"]["text"] == "4/4"
    assert all(
        s["status"] == "succeeded" and s["hosts"] == {"total": 2, "ended": 2, "failed": 0, "succeeded": 2}
        for s in body["steps"]
    )
    creators = {t.created_by for t in FleetTask.select()}
    assert creators == {f"workflow:{wf['id']}/{n}" for n in "abcd"}
    listed = answer(client.get("/api/workflows?status=completed"))
    assert [w["id"] for w in listed["workflows"]] == [wf["id"]] and listed["workflows"][0]["progress"]["done"] == 4


def test_a_failed_dependency_with_stop_skips_the_rest_and_fails_the_workflow(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    two_nodes(client, redis_client)
    wf = post(client, [step("a"), step("side"), step("b", "a"), step("after_side", "side")])
    by = {s["name"]: s for s in wf["steps"]}
    run(redis_client, by["a"]["task_id"], {"n1": 0, "n2": 1})
    wait_until(lambda: steps_of(client, wf["id"])["b"]["status"] == "skipped", what="b skipped")
    # The workflow stops: no new step starts, the running one finishes.
    steps = steps_of(client, wf["id"])
    assert steps["side"]["status"] == "running" and steps["after_side"]["status"] == "skipped"
    assert "depends on 'a', which failed" in steps["b"]["reason"]
    run(redis_client, by["side"]["task_id"], {"n1": 0, "n2": 0})
    body = ended(client, wf["id"])
    assert body["status"] == "failed"
    assert [(s["name"], s["status"]) for s in body["steps"]] == [
        ("a", "failed"),
        ("side", "succeeded"),
        ("b", "skipped"),
        ("after_side", "skipped"),
    ]
    assert WorkflowStep.select().where(WorkflowStep.task_id.is_null(False)).count() == 2


def test_continue_runs_the_step_anyway_and_succeeded_on_targets_only_where_it_succeeded(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    two_nodes(client, redis_client)
    wf = post(
        client,
        [
            step("a"),
            step("cleanup", "a", on_failed="continue"),
            step("next", "a", on_failed="continue", targets=("succeeded_on:a",)),
        ],
    )
    run(redis_client, {s["name"]: s for s in wf["steps"]}["a"]["task_id"], {"n1": 0, "n2": 3})
    cleanup, nxt = started(client, wf["id"], "cleanup"), started(client, wf["id"], "next")
    assert FleetTask.get(FleetTask.task_id == nxt).total_hosts == 1
    hosts = answer(client.get(f"/api/tasks/{nxt}"))["hosts"]
    assert [h["host_id"] for h in hosts] == ["n1"]
    run(redis_client, cleanup, {"n1": 0, "n2": 0})
    run(redis_client, nxt, {"n1": 0})
    body = ended(client, wf["id"])
    assert body["status"] == "failed"  # a failed
    assert [s["status"] for s in body["steps"]] == ["failed", "succeeded", "succeeded"]


def test_cancel_cancels_running_tasks_and_pending_steps_then_409(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    two_nodes(client, redis_client)
    wf = post(client, [step("a"), step("b", "a")])
    a = {s["name"]: s for s in wf["steps"]}["a"]["task_id"]
    body = answer(client.post(f"/api/workflows/{wf['id']}/cancel"))
    assert body["status"] == "canceled" and body["canceled_by"]
    assert FleetTask.get(FleetTask.task_id == a).status == "canceled"
    body = ended(client, wf["id"])  # the canceled task's hosts end at once (pending on the agents' queues)
    assert [s["status"] for s in body["steps"]] == ["canceled", "canceled"]
    assert body["status"] == "canceled"
    assert client.post(f"/api/workflows/{wf['id']}/cancel").status_code == 409
    actions = [(row.action, row.target) for row in AuditLog.select().where(AuditLog.action.startswith("workflow"))]
    assert actions == [("workflow.create", wf["id"]), ("workflow.cancel", wf["id"])]


def test_bad_input_is_a_400_naming_the_field_and_nothing_is_created(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    two_nodes(client, redis_client)
    cases = {
        "steps: cycle a -> b -> a": [step("a", "b"), step("b", "a")],
        "steps[1].depends_on: unknown step 'x'": [step("a"), step("b", "x")],
        "steps[0].task.targets: unknown step 'zz'": [step("a", targets=("succeeded_on:zz",))],
        "steps[1].name: step name 'a' is used twice": [step("a"), step("a")],
        "steps.1.task.command": [step("a"), {**step("b"), "task": {"targets": ["*"]}}],
        "steps.0.task.timeout": [{**step("a"), "task": {"command": "x", "targets": ["*"], "timeout": 0}}],
        "steps.0.on_failed_dependency": [step("a", on_failed="maybe")],
        "steps.0.name": [step("1bad")],
        "steps.0.task": [{"name": "a"}],
        "steps.0.bogus": [{**step("a"), "bogus": 1}],
    }
    for field, steps in cases.items():
        error = answer(client.post("/api/workflows", json={"name": "bad", "steps": steps}), 400)["error"]
        assert field in error, (field, error)
    assert "steps" in answer(client.post("/api/workflows", json={"name": "bad", "steps": []}), 400)["error"]
    assert "name" in answer(client.post("/api/workflows", json={"steps": [step("a")]}), 400)["error"]
    assert Workflow.select().count() == 0 and WorkflowStep.select().count() == 0 and FleetTask.select().count() == 0
    assert AuditLog.select().where(AuditLog.action.startswith("workflow")).count() == 0


def test_unknown_workflow_is_404(client: FlaskClient) -> None:
    assert client.get("/api/workflows/nope").status_code == 404
    assert client.post("/api/workflows/nope/cancel").status_code == 404
    assert client.get("/api/workflows/nope/events").status_code == 404
    assert client.get("/api/workflows/" + "x" * 200).status_code == 404


def test_events_stream_every_step_change_until_the_end(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    two_nodes(client, redis_client)
    wf = post(client, [step("a")])
    run(redis_client, wf["steps"][0]["task_id"], {"n1": 0, "n2": 0})
    ended(client, wf["id"])
    text = client.get(f"/api/workflows/{wf['id']}/events").get_data(as_text=True)
    assert "event: step" in text and '"status": "succeeded"' in text
    assert text.rstrip().endswith('"status": "completed"}') and "event: end" in text


SECRET = "wf-s3cr3t-0815"


def test_a_steps_secret_env_is_stored_encrypted_survives_a_key_rotation_and_reaches_its_task(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings, duties: Duties
) -> None:
    two_nodes(client, redis_client)
    later = {**step("b", "a"), "task": {**step("b")["task"], "secretEnv": {"TOKEN": SECRET}}}
    wf = post(client, [step("a"), later])
    assert SECRET not in json.dumps(wf)
    row = WorkflowStep.get(WorkflowStep.name == "b")
    assert SECRET not in row.spec and SECRET not in row.sealed and row.sealed
    key_file = secret_store.key_file_of(settings)
    db_flag = ["--db-url", settings.db_path] if "://" in settings.db_path else ["--db-path", settings.db_path]
    assert manager_main(["secrets", "rotate-key", *db_flag, "--secrets-key-file", str(key_file)]) == 0
    rotated = WorkflowStep.get(WorkflowStep.name == "b").sealed
    assert rotated != row.sealed  # re-encrypted: the old key is gone from the file
    run(redis_client, wf["steps"][0]["task_id"], {"n1": 0, "n2": 0})
    task = answer(client.get(f"/api/tasks/{started(client, wf['id'], 'b')}"))
    assert task["secretEnv"] == {"TOKEN": "(secret)"}
    stored = FleetTask.get(FleetTask.task_id == task["task_id"]).secret_env
    assert secret_store.decrypt_env(stored) == {"TOKEN": SECRET}


def test_an_operators_workflow_keeps_to_its_scope_at_every_step(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    """Checked at the POST (commands, nodes reached today), and each later step again under the poster's scope:
    a node that comes to match a later step's targets outside the token's node query is never reached."""
    business_helpers.add_node(client, redis_client, "n1", labels={"zone": "a"})
    business_helpers.add_node(client, redis_client, "n2", labels={"zone": "b"})
    token = {"name": "ops-a", "role": "operator", "nodeQuery": "labels.zone:a", "commands": ["echo *"]}
    operator = bearer(answer(client.post("/api/tokens", json=token), 201)["token"])
    body = {
        "name": "scoped",
        "steps": [step("a", targets=("n1",)), step("b", "a", targets=("host-n3",)), step("c", "a", targets=("n1",))],
    }
    outside = {"name": "x", "steps": [step("a", targets=("n2",))]}
    assert "n2" in answer(client.post("/api/workflows", json=outside, headers=operator), 403)["error"]
    not_allowed = {"name": "x", "steps": [{**step("a"), "task": {"command": "rm -rf /", "targets": ["n1"]}}]}
    answer(client.post("/api/workflows", json=not_allowed, headers=operator), 403)
    assert Workflow.select().count() == 0
    wf = answer(client.post("/api/workflows", json=body, headers=operator), 201)
    business_helpers.add_node(client, redis_client, "n3", labels={"zone": "b"})  # host-n3 appears, in zone b
    run(redis_client, wf["steps"][0]["task_id"], {"n1": 0})
    # b and c start in one wave (created together): b refused does not keep c from its task.
    run(redis_client, started(client, wf["id"], "c"), {"n1": 0})
    done = ended(client, wf["id"])
    b, c = ({s["name"]: s for s in done["steps"]}[name] for name in ("b", "c"))
    assert b["status"] == "failed" and b["task_id"] is None and "n3" in b["reason"]
    assert c["status"] == "succeeded"
    assert FleetTask.select().count() == 2 and queued(redis_client, "n3") == []


def test_prune_deletes_workflows_ended_past_the_retention_with_their_steps(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    two_nodes(client, redis_client)
    old, going = post(client, [step("a")]), post(client, [step("a")])
    assert client.post(f"/api/workflows/{old['id']}/cancel").status_code == 200
    with db.write_transaction():
        Workflow.update(finished_at=utcnow() - timedelta(days=8)).where(Workflow.workflow_id == old["id"]).execute()
    assert workflow_actions.prune(7) == 1 and workflow_actions.prune(7) == 0
    assert [w.workflow_id for w in Workflow.select()] == [going["id"]]
    assert WorkflowStep.select().count() == 1


def test_a_step_whose_task_is_created_as_the_workflow_is_canceled_has_its_task_canceled(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    """The cancel saw the step claimed but its task not yet created: the engine cancels the task once created."""
    two_nodes(client, redis_client)
    wf = post(client, [step("a"), step("b")])
    row = Workflow.get(Workflow.workflow_id == wf["id"])
    b = WorkflowStep.get(WorkflowStep.name == "b")
    with db.write_transaction():  # as if b's claim were still to come while the cancel landed
        WorkflowStep.update(status="pending", task_id=None).where(WorkflowStep.id == b.id).execute()
        Workflow.update(status="canceled").where(Workflow.id == row.id).execute()
    with app.test_request_context():
        advance._start(app.extensions["corral"].redis, row, [WorkflowStep.get_by_id(b.id)], {}, 3)
    task_id = WorkflowStep.get_by_id(b.id).task_id
    assert task_id and FleetTask.get(FleetTask.task_id == task_id).status == "canceled"


def test_a_step_not_started_for_want_of_redis_goes_back_to_pending_and_starts_later(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    two_nodes(client, redis_client)
    wf = post(client, [step("a"), step("b", "a")])
    row = Workflow.get(Workflow.workflow_id == wf["id"])
    with db.write_transaction():  # a ended well (as the duties would have recorded)
        WorkflowStep.update(status="succeeded").where(WorkflowStep.name == "a").execute()
    unreachable = redis_lib.Redis(host="127.0.0.1", port=9, socket_connect_timeout=1)  # nothing listens there
    done = threading.Event()

    def attempt() -> None:
        with app.app_context():
            advance.advance(unreachable, row.id, 3)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(10), "advance returns (it does not retry in a loop while Redis is down)"
    b = WorkflowStep.get(WorkflowStep.name == "b")
    assert b.status == "pending" and b.started_at is None and b.task_id is None
    assert FleetTask.select().count() == 1
    with app.app_context():
        advance.advance(app.extensions["corral"].redis, row.id, 3)
    assert WorkflowStep.get(WorkflowStep.name == "b").task_id is not None


def test_a_step_runs_a_registered_script_with_its_params_checked_at_the_post(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    """A step's task body is a fleet task body: "script": "name@version" with params works as in POST /api/tasks."""
    two_nodes(client, redis_client)
    script = {"name": "hello", "version": "1.0", "interpreter": "python3", "body": "print(1)\n"}
    params = [{"name": "who", "type": "string", "required": True}, {"name": "token", "type": "string", "secret": True}]
    assert client.post("/api/scripts", json={**script, "params": params}).status_code == 201

    def scripted(name: str, *depends_on: str, **params: Any) -> dict[str, Any]:
        task = {"script": "hello@1.0", "params": params, "targets": ["*"]}
        return {"name": name, "depends_on": list(depends_on), "task": task}

    error = answer(client.post("/api/workflows", json={"name": "x", "steps": [step("a"), scripted("s", "a")]}), 400)
    assert error["error"].startswith("Invalid request format: steps[1].task.params") and "who" in error["error"]
    error = answer(client.post("/api/workflows", json={"name": "x", "steps": [{**step("a"), "task": {
        "script": "nope@1", "targets": ["*"]}}]}), 400)["error"]  # fmt: skip
    assert "steps[0].task.script" in error and "nope" in error
    assert Workflow.select().count() == 0
    wf = post(client, [step("a"), scripted("s", "a", who="web", token=SECRET)])
    shown = {s["name"]: s for s in wf["steps"]}["s"]
    assert shown["script"] == "hello@1.0" and shown["command"] is None and SECRET not in json.dumps(wf)
    assert SECRET not in WorkflowStep.get(WorkflowStep.name == "s").spec
    run(redis_client, wf["steps"][0]["task_id"], {"n1": 0, "n2": 0})
    task = answer(client.get(f"/api/tasks/{started(client, wf['id'], 's')}"))
    assert (task["script"]["name"], task["script"]["version"]) == ("hello", "1.0") and SECRET not in json.dumps(task)
    (job, *_) = queued(redis_client, "n1")[-1:]
    assert job.args[0]["script"]["digest"]
