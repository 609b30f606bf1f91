"""Schedules that run a registered script (issue 17): validation at creation as POST /api/tasks validates, storage
(secret parameters sealed at rest, masked in answers), the firings' tasks, the on_agent sets, and the script's
deletion refused while a schedule names it (real Redis and duties)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.launcher.main import main as manager_main
from manager_api.models import AuditLog, FleetTask, Schedule
from manager_api.services import secret_store
from shared import jobs, keys
from tests.support import wait_until

from .conftest import answer
from .tasks_helpers import add_node, queued, report
from .test_scripts_api import register


def make(client: FlaskClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    payload = {"name": "hello-every", "script": "hello@1.0", "targets": ["web-01"], "interval": 60, **body}
    return answer(client.post("/api/schedules", json={k: v for k, v in payload.items() if v is not None}), expect)


def schedule_created() -> int:
    return AuditLog.select().where(AuditLog.action == "schedule.create").count()


def test_a_script_schedule_stores_its_params_secret_ones_sealed_and_masked(client: FlaskClient) -> None:
    register(client)
    made = make(client, params={"who": "ann", "loud": True, "token": "s3cret"})
    assert made["command"] == "script:hello@1.0" and made["script"] == "hello@1.0"
    assert made["params"] == {"who": "ann", "loud": True, "token": "(secret)"}
    assert made["secretEnv"] == {}
    shown = answer(client.get(f"/api/schedules/{made['id']}"))
    assert shown["script"] == "hello@1.0" and shown["params"] == made["params"]
    (listed,) = answer(client.get("/api/schedules"))["schedules"]
    assert listed["params"] == made["params"]
    assert "s3cret" not in json.dumps([made, shown, listed])
    row = Schedule.get_by_id(made["id"])
    assert json.loads(row.params) == {"who": "ann", "loud": True}  # as given, typed: each firing checks again
    assert "s3cret" not in row.secret_params and secret_store.decrypt_env(row.secret_params) == {"token": "s3cret"}
    # A command schedule shows no script.
    plain = answer(
        client.post("/api/schedules", json={"name": "up", "command": "uptime", "targets": ["*"], "interval": 60}), 201
    )
    assert plain["script"] is None and plain["params"] == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"script": "nope@1"}, "script: unknown script 'nope'"),
        ({"script": "hello@9"}, "script: 'hello' has no version '9' (versions: 1.0)"),
        ({"script": "hello"}, "script: 'hello' must read name@version"),
        ({"params": {}}, "params.who: required"),
        ({"params": {"who": 1}}, "params.who: must be of type string"),
        ({"params": {"who": "a", "count": "2"}}, "params.count: must be of type int"),
        ({"params": {"who": "a", "colour": "red"}}, "params.colour: unknown parameter"),
        ({"params": {"who": "a"}, "env": {"CORRAL_PARAM_WHO": "x"}}, "env: CORRAL_PARAM_WHO"),
        ({"params": {"who": "a"}, "command": "uptime"}, "command"),
        ({"script": None, "params": {"who": "a"}, "command": "uptime"}, "params"),
        ({"script": None}, "command"),  # neither
        ({"params": {"who": "a", "token": "t"}, "on_agent": True}, "params: an on_agent schedule cannot carry"),
    ],
)
def test_bad_script_or_params_are_400_naming_the_field_and_create_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, body: dict[str, Any], message: str
) -> None:
    register(client)
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    payload = {"name": "s", "script": "hello@1.0", "targets": ["web-01"], "interval": 60, **body}
    response = client.post("/api/schedules", json={k: v for k, v in payload.items() if v is not None})
    assert response.status_code == 400, response.get_json()
    error = response.get_json()
    assert message in error["error"] or message in str(error.get("errors", "")), error
    assert Schedule.select().count() == 0 and schedule_created() == 0
    assert not [job for job in queued(redis_client, "n1") if job.func_name == jobs.SYNC_AGENT_SCHEDULES]


def test_a_script_named_by_a_schedule_is_not_deleted(client: FlaskClient) -> None:
    register(client)
    made = make(client, params={"who": "ann"})
    answer(client.post(f"/api/schedules/{made['id']}/pause"))
    refused = client.delete("/api/scripts/hello/1.0")  # paused still names it
    assert refused.status_code == 409 and "hello-every" in refused.get_json()["error"], refused.get_json()
    answer(client.delete(f"/api/schedules/{made['id']}"))
    answer(client.delete("/api/scripts/hello/1.0"))


def test_each_firing_runs_the_script_with_its_params(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    script = register(client)
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    make(client, interval=1, params={"who": "ann", "count": 3, "token": "s3cret"})

    def fired() -> list[FleetTask]:
        return list(FleetTask.select().where(FleetTask.created_by == "schedule:hello-every").order_by(FleetTask.id))

    wait_until(lambda: len(fired()) >= 2, timeout=10, what="two firings")
    task = fired()[0]
    assert task.command == "script:hello@1.0"
    ref = json.loads(task.script)
    assert ref["digest"] == script["digest"] and ref["params"] == {"who": "ann", "count": "3"}
    assert ref["secret_params"] == ["token"]
    assert secret_store.decrypt_env(task.secret_env) == {"CORRAL_PARAM_TOKEN": "s3cret"}  # sealed in its row
    runs = [job.args[0] for job in queued(redis_client, "n1") if job.func_name == jobs.RUN_COMMAND]
    assert runs and runs[0]["script"]["args"] == ["--who=ann", "--count=3"]
    assert runs[0]["env"] == {"CORRAL_PARAM_WHO": "ann", "CORRAL_PARAM_COUNT": "3"}
    assert "s3cret" not in str(runs)  # sealed for the node


def test_an_on_agent_set_carries_what_the_node_runs_the_script_with(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    script = register(client)
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    redis_client.delete(keys.script_content(script["digest"]))  # Redis lost it: sending the set writes it again
    made = make(client, on_agent=True, params={"who": "ann", "loud": False}, env={"A": "1"})
    (entry,) = [job.args[0] for job in queued(redis_client, "n1") if job.func_name == jobs.SYNC_AGENT_SCHEDULES][-1][
        "schedules"
    ]
    assert entry["id"] == made["id"] and entry["command"] == "script:hello@1.0"
    assert entry["script"] == {
        "name": "hello",
        "version": "1.0",
        "digest": script["digest"],
        "interpreter": "python3",
        "kind": "body",
        "entry": "",
        "args": ["--who=ann", "--count=2", "--loud=false"],
    }
    assert entry["env"] == {
        "A": "1",
        "CORRAL_PARAM_WHO": "ann",
        "CORRAL_PARAM_COUNT": "2",
        "CORRAL_PARAM_LOUD": "false",
    }
    assert redis_client.get(keys.script_content(script["digest"])) is not None
    # A command schedule's entry says no script.
    make(client, name="plain", script=None, command="echo hi", on_agent=True)
    entries = [job.args[0] for job in queued(redis_client, "n1") if job.func_name == jobs.SYNC_AGENT_SCHEDULES][-1]
    assert [e["script"] is None for e in entries["schedules"]] == [False, True]


def test_rotate_key_covers_a_schedules_secret_params(client: FlaskClient, settings: Settings) -> None:
    register(client)
    made = make(client, params={"who": "ann", "token": "s3cret"})
    before = Schedule.get_by_id(made["id"]).secret_params
    key_file = secret_store.key_file_of(settings)
    db_flag = ["--db-url", settings.db_path] if "://" in settings.db_path else ["--db-path", settings.db_path]
    assert manager_main(["secrets", "rotate-key", *db_flag, "--secrets-key-file", str(key_file)]) == 0
    after = Schedule.get_by_id(made["id"]).secret_params
    assert after != before and secret_store.decrypt_env(after) == {"token": "s3cret"}  # the old key is gone


def test_an_on_agent_firings_task_shows_its_script(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    register(client)
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    made = make(client, on_agent=True, params={"who": "ann"})
    task_id = "0b7c9a57-1111-5222-8333-444455556666"
    firing = {
        "id": made["id"],
        "name": made["name"],
        "fired_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "command": "script:hello@1.0",
        "timeout": 60.0,
    }
    now = time.time()
    report(redis_client, task_id, "n1", "succeeded", exit_code=0, started_at=now, finished_at=now, schedule=firing)
    task = wait_until(lambda: FleetTask.get_or_none(FleetTask.task_id == task_id), what="the firing's task")
    assert task.command == "script:hello@1.0"
    ref = json.loads(task.script)
    assert (ref["name"], ref["version"], ref["params"]) == ("hello", "1.0", {"who": "ann", "count": "2"})
