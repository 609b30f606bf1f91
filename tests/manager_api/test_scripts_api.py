"""Scripts REST API (issue 17) without agents: register, list, show, delete, run as a fleet task, bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.models import AuditLog, FleetTask, Script
from manager_api.services.nodes import redis_users
from shared import jobs, keys
from shared.defaults import SCRIPT_MAX_EXTRACTED_BYTES

from .conftest import answer
from .tasks_helpers import add_node, queued

BODY = "import sys, os\nprint(sys.argv[1:], os.environ.get('CORRAL_PARAM_WHO'))\n"
PARAMS = [
    {"name": "who", "type": "string", "required": True},
    {"name": "count", "type": "int", "default": 2},
    {"name": "loud", "type": "bool"},
    {"name": "token", "type": "string", "secret": True},
]


def register(client: FlaskClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    payload = {"name": "hello", "version": "1.0", "interpreter": "python3", "body": BODY, "params": PARAMS, **body}
    response = client.post("/api/scripts", json=payload)
    assert response.status_code == expect, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def create(client: FlaskClient, **body: Any) -> dict[str, Any]:
    """POST /api/tasks running a script (tasks_helpers.create would add a command)."""
    return answer(client.post("/api/tasks", json={"name": "t", "targets": ["*"], **body}), 201)


def zipped(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def fleet(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1", {"role": "web"})
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2", {"role": "web"})


def test_register_answers_without_content_and_writes_redis(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    body = register(client)
    digest = hashlib.sha256(BODY.encode()).hexdigest()
    assert body["digest"] == digest and body["size"] == len(BODY.encode()) and body["kind"] == "body"
    assert "content" not in body and body["entry"] == "" and body["interpreter"] == "python3"
    assert [p["name"] for p in body["params"]] == ["who", "count", "loud", "token"]
    assert body["params"][1]["default"] == 2 and body["params"][3]["secret"] is True
    assert redis_client.get(keys.script_content(digest)) == BODY.encode()
    shown = client.get("/api/scripts/hello/1.0?content=1").get_json()
    assert shown["content"] == BODY and shown["content_encoding"] == "text"
    assert [(a.action, a.target) for a in AuditLog.select()] == [("script.create", "hello@1.0")]


def test_versions_are_immutable_listed_and_deleted(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    register(client)
    register(client, 409)  # the same again
    register(client, 409, body="echo other\n", interpreter="sh")  # anything else under the same version
    register(client, version="1.1", body="print(2)\n")
    register(client, name="other", version="0.1", interpreter="/bin/sh", body="echo x\n", params=[])
    listed = client.get("/api/scripts").get_json()
    versions = [(s["name"], s["version"]) for s in listed["scripts"]]
    assert versions == [("hello", "1.1"), ("hello", "1.0"), ("other", "0.1")]
    assert listed["total"] == 3 and "content" not in listed["scripts"][0]
    assert client.get("/api/scripts?name=oth").get_json()["total"] == 1
    assert [v["version"] for v in client.get("/api/scripts/hello").get_json()["versions"]] == ["1.1", "1.0"]
    assert client.get("/api/scripts/nope").status_code == 404
    assert client.get("/api/scripts/hello/9").status_code == 404
    digest = client.get("/api/scripts/hello/1.1").get_json()["digest"]
    deleted = client.delete("/api/scripts/hello/1.1")
    assert deleted.status_code == 200 and deleted.get_json() == {"name": "hello", "version": "1.1", "deleted": True}
    assert client.get("/api/scripts/hello/1.1").status_code == 404
    assert redis_client.get(keys.script_content(digest)) is None
    assert client.delete("/api/scripts/hello/1.1").status_code == 404
    assert ("script.delete", "hello@1.1") in [(a.action, a.target) for a in AuditLog.select()]


def test_zip_script_with_entry(client: FlaskClient) -> None:
    archive = zipped({"app/main.sh": "echo main\n", "app/lib.sh": "x=1\n"})
    body = register(client, name="zipped", body=None, archive=archive, entry="app/main.sh", interpreter="bash")
    assert body["kind"] == "zip" and body["entry"] == "app/main.sh"
    shown = client.get("/api/scripts/zipped/1.0?content=true").get_json()
    assert shown["content_encoding"] == "base64" and shown["content"] == archive


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"version": "1/2"}, "version"),
        ({"version": "1@2"}, "version"),
        ({"interpreter": "perl"}, "interpreter"),
        ({"interpreter": "/usr/../bin/sh"}, "interpreter"),
        ({"body": None}, "body"),
        ({"body": ""}, "body"),
        ({"archive": "AAAA"}, "body"),
        ({"body": None, "archive": "!!", "entry": "a"}, "archive"),
        ({"body": None, "archive": base64.b64encode(b"not a zip").decode(), "entry": "a"}, "archive"),
        ({"body": None, "archive": zipped({"a.sh": "x"})}, "entry"),
        ({"body": None, "archive": zipped({"a.sh": "x"}), "entry": "b.sh"}, "entry"),
        ({"body": None, "archive": zipped({"a.sh": "x"}), "entry": "../a.sh"}, "entry"),
        ({"body": None, "archive": zipped({"../evil.sh": "x"}), "entry": "../evil.sh"}, "entry"),
        ({"body": None, "archive": zipped({"/abs.sh": "x", "a.sh": "y"}), "entry": "a.sh"}, "archive"),
        ({"entry": "a.sh"}, "entry"),
        ({"params": [{"name": "x", "type": "int", "default": "1"}]}, "params[0].default"),
        ({"params": [{"name": "x"}, {"name": "x"}]}, "params[1].name"),
    ],
)
def test_bad_registration_is_400_naming_the_field(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    payload = {"name": "hello", "version": "1.0", "interpreter": "python3", "body": BODY, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    response = client.post("/api/scripts", json=payload)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"] or field in str(response.get_json().get("errors", ""))
    assert Script.select().count() == 0 and AuditLog.select().count() == 0


def test_a_zip_bomb_is_refused(client: FlaskClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.sh", "echo main\n")
        archive.writestr("zeros", b"\0" * (SCRIPT_MAX_EXTRACTED_BYTES + 1))  # ~64 KiB compressed
    encoded = base64.b64encode(buffer.getvalue()).decode()
    response = client.post(
        "/api/scripts",
        json={"name": "bomb", "version": "1", "interpreter": "sh", "archive": encoded, "entry": "main.sh"},
    )
    assert response.status_code == 400 and "archive: its files take more than" in response.get_json()["error"]
    assert Script.select().count() == 0


def test_a_megabyte_script_fits_the_scripts_route(client: FlaskClient) -> None:
    big = "#" + "x" * (1024 * 1024) + "\n"  # 1 MiB of text: 1.33 MiB as JSON would not fit the default limit
    assert register(client, name="big", body=big, params=[])["size"] == len(big)


def test_other_routes_keep_the_default_body_limit(client: FlaskClient) -> None:
    archive = base64.b64encode(b"\0" * (1024 * 1024)).decode()  # any other route still refuses such a body
    assert client.post("/api/tasks", json={"name": "x", "command": archive, "targets": ["*"]}).status_code == 413


def test_run_sends_script_params_env_and_args(client: FlaskClient, redis_client: redis_lib.Redis, fleet: None) -> None:
    script = register(client)
    task = create(
        client, name="hi", script="hello@1.0", params={"who": "ann", "loud": True, "token": "s3cret"}, targets=["*"]
    )
    assert task["command"] == "script:hello@1.0" and task["total_hosts"] == 2
    assert task["script"] == {
        "name": "hello",
        "version": "1.0",
        "digest": script["digest"],
        "interpreter": "python3",
        "kind": "body",
        "entry": "",
        "size": script["size"],
        "params": {"who": "ann", "count": "2", "loud": "true"},
        "secret_params": ["token"],
    }
    assert task["secretEnv"] == {"CORRAL_PARAM_TOKEN": "(secret)"}
    assert "s3cret" not in str(client.get(f"/api/tasks/{task['task_id']}").get_json())
    (job,) = queued(redis_client, "n1")
    assert job.func_name == jobs.RUN_COMMAND
    sent = job.args[0]
    assert sent["script"] == {
        "name": "hello",
        "version": "1.0",
        "digest": script["digest"],
        "interpreter": "python3",
        "kind": "body",
        "entry": "",
        "args": ["--who=ann", "--count=2", "--loud=true"],
    }
    assert sent["env"] == {"CORRAL_PARAM_WHO": "ann", "CORRAL_PARAM_COUNT": "2", "CORRAL_PARAM_LOUD": "true"}
    assert "s3cret" not in str(sent)  # sealed for the node
    assert FleetTask.get().script != ""
    # Redis lost the content: the next dispatch writes it again.
    redis_client.delete(keys.script_content(script["digest"]))
    create(client, name="again", script="hello@1.0", params={"who": "bob"}, targets=["n1"])
    assert redis_client.get(keys.script_content(script["digest"])) == BODY.encode()
    # A script used by a running task is not deleted.
    refused = client.delete("/api/scripts/hello/1.0")
    assert refused.status_code == 409 and task["task_id"] in refused.get_json()["error"]


def test_plain_command_wire_has_no_script(client: FlaskClient, redis_client: redis_lib.Redis, fleet: None) -> None:
    task = create(client, name="up", command="uptime", targets=["n1"])
    (job,) = queued(redis_client, "n1")
    assert "script" not in job.args[0] and task["script"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"script": "nope@1"}, "script: unknown script 'nope'"),
        ({"script": "hello@9"}, "script: 'hello' has no version '9' (versions: 1.0)"),
        ({"script": "hello"}, "script: 'hello' must read name@version"),
        ({"script": "hello@1.0", "params": {}}, "params.who: required"),
        ({"script": "hello@1.0", "params": {"who": 1}}, "params.who: must be of type string"),
        ({"script": "hello@1.0", "params": {"who": "a", "count": "2"}}, "params.count: must be of type int"),
        ({"script": "hello@1.0", "params": {"who": "a", "loud": "yes"}}, "params.loud: must be of type bool"),
        ({"script": "hello@1.0", "params": {"who": "a", "colour": "red"}}, "params.colour: unknown parameter"),
        ({"script": "hello@1.0", "params": {"who": "a"}, "env": {"CORRAL_PARAM_WHO": "x"}}, "env: CORRAL_PARAM_WHO"),
        ({"script": "hello@1.0", "command": "uptime"}, "command"),
        ({}, "command"),
        ({"command": "uptime", "params": {"who": "a"}}, "params"),
    ],
)
def test_bad_run_is_400_naming_the_field_and_creates_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None, body: dict[str, Any], message: str
) -> None:
    register(client)
    response = client.post("/api/tasks", json={"name": "t", "targets": ["*"], **body})
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert message in answer["error"] or message in str(answer.get("errors", "")), answer
    assert FleetTask.select().count() == 0
    assert queued(redis_client, "n1") == []


def test_node_users_may_read_script_contents_only(redis_client: redis_lib.Redis) -> None:
    rules = redis_users.rules("n1")
    assert f"%R~{keys.SCRIPT_CONTENT_PREFIX}*" in rules
    assert not any(rule.startswith("~corral:script") for rule in rules)  # read, never write


def test_a_pending_script_task_sends_its_script_when_started(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    register(client)
    task = create(client, name="later", script="hello@1.0", params={"who": "ann"}, targets=["n1"], start=False)
    assert task["status"] == "pending" and queued(redis_client, "n1") == []
    assert client.delete("/api/scripts/hello/1.0").status_code == 409  # pending counts as in use
    started = answer(client.post(f"/api/tasks/{task['task_id']}/start"), 200)
    assert started["status"] == "running"
    (job,) = queued(redis_client, "n1")
    assert job.args[0]["script"]["args"] == ["--who=ann", "--count=2"]
