"""Templates through the real app: manual JSON, duplicates, the bad-input matrix, 413, auth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from manager_api.app import close_app, create_app
from manager_api.config import Settings
from manager_api.models import Template
from shared.api import bearer
from shared.defaults import MAX_BODY_BYTES

from .conftest import template_body

MANUAL_TEMPLATE = {
    "name": "我的数据处理任务",
    "task_groups": [
        {
            "tasks": [
                {"name": "数据清洗器", "config": {"command": "192.168.10.100:/opt/apps/clean.sh"}},
                {"name": "数据分析器", "config": {"command": "/opt/apps/analyze.py"}},
            ]
        }
    ],
}


def test_create_and_query_as_the_manual_shows(client: FlaskClient) -> None:
    # curl -d without a content type must work too.
    created = client.post("/api/task/task_group", data=json.dumps(MANUAL_TEMPLATE))
    assert (created.status_code, created.get_json()) == (200, {"status": "success"})
    shown = client.post("/api/task/query", data=json.dumps({"name": "我的数据处理任务"}))
    assert shown.status_code == 200
    assert shown.get_json() == {
        "name": "我的数据处理任务",
        "task_groups": [
            {
                "tasks": [
                    {
                        "name": "数据清洗器",
                        "config": {"command": "/opt/apps/clean.sh", "host": "192.168.10.100"},
                    },
                    {"name": "数据分析器", "config": {"command": "/opt/apps/analyze.py"}},
                ]
            }
        ],
    }
    # The stored spec keeps the command raw, pin included.
    assert "192.168.10.100:/opt/apps/clean.sh" in Template.get(Template.name == "我的数据处理任务").spec


def test_queried_template_can_be_posted_again(client: FlaskClient) -> None:
    client.post("/api/task/task_group", json=MANUAL_TEMPLATE)
    shown = client.post("/api/task/query", json={"name": MANUAL_TEMPLATE["name"]}).get_json()
    shown["name"] = "copy"
    assert client.post("/api/task/task_group", json=shown).status_code == 200
    assert client.post("/api/task/query", json={"name": "copy"}).get_json()["task_groups"] == shown["task_groups"]


def test_names_are_trimmed(client: FlaskClient) -> None:
    assert client.post("/api/task/task_group", json=template_body("  spaced  ", ["/bin/true"])).status_code == 200
    assert client.post("/api/task/query", json={"name": "spaced"}).get_json()["name"] == "spaced"


def test_duplicate_name_is_409(client: FlaskClient) -> None:
    assert client.post("/api/task/task_group", json=template_body("dup", ["/bin/true"])).status_code == 200
    again = client.post("/api/task/task_group", json=template_body("dup", ["/bin/false"]))
    assert again.status_code == 409
    assert again.get_json() == {"error": "Business template 'dup' already exists"}
    assert Template.select().count() == 1


def test_unknown_template_is_404(client: FlaskClient) -> None:
    response = client.post("/api/task/query", json={"name": "nope"})
    assert (response.status_code, response.get_json()) == (404, {"error": "Business template not found"})


def _task(**config: Any) -> dict[str, Any]:
    return {"name": "t", "config": config}


BAD_TEMPLATES: list[tuple[Any, str]] = [
    ("not json", "body must be a JSON object"),
    ([1, 2], "body must be a JSON object"),
    ({}, "name"),
    ({"name": "x"}, "task_groups"),
    ({"name": "", "task_groups": [{"tasks": [_task(command="/bin/true")]}]}, "name: Must not be empty"),
    ({"name": "   ", "task_groups": [{"tasks": [_task(command="/bin/true")]}]}, "name: Must not be empty"),
    ({"name": 7, "task_groups": [{"tasks": [_task(command="/bin/true")]}]}, "name: Not a valid string"),
    ({"name": "x" * 256, "task_groups": [{"tasks": [_task(command="/bin/true")]}]}, "name"),
    ({"name": "x", "task_groups": []}, "task_groups"),
    ({"name": "x", "task_groups": "abc"}, "task_groups"),
    ({"name": "x", "task_groups": [{"tasks": []}]}, "task_groups.0.tasks"),
    ({"name": "x", "task_groups": [{}]}, "task_groups.0.tasks"),
    ({"name": "x", "task_groups": [{"tasks": [{"name": "t"}]}]}, "task_groups.0.tasks.0.config"),
    ({"name": "x", "task_groups": [{"tasks": [_task()]}]}, "task_groups.0.tasks.0.config.command"),
    ({"name": "x", "task_groups": [{"tasks": [_task(command="  ")]}]}, "config.command: Must not be empty"),
    (
        {"name": "x", "task_groups": [{"tasks": [_task(command=["ls"])]}]},
        "config.command: Not a valid string",
    ),
    (
        {"name": "x", "task_groups": [{"tasks": [_task(command="/a", extra=1)]}]},
        "config.extra: Unknown field",
    ),
    ({"name": "x", "task_groups": [{"tasks": [_task(command="/a")]}], "more": 1}, "more: Unknown field"),
    ({"name": "x", "task_groups": [{"tasks": [_task(command="h1:/a", host="h2")]}]}, "config.host"),
]


@pytest.mark.parametrize(("body", "mentions"), BAD_TEMPLATES)
def test_bad_templates_are_400_naming_the_field(client: FlaskClient, body: Any, mentions: str) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/api/task/task_group", data=data, content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith("Invalid request format")
    assert mentions in error
    assert Template.select().count() == 0


@pytest.mark.parametrize("path", ["/api/task/query", "/api/task/task_group/deploy"])
@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ("{", "JSON object"),
        ('"x"', "JSON object"),
        ("{}", "name"),
        ('{"name": 1}', "name"),
        ('{"name": ""}', "name"),
    ],
)
def test_bad_name_bodies(client: FlaskClient, path: str, body: str, mentions: str) -> None:
    response = client.post(path, data=body)
    assert response.status_code == 400
    assert mentions in response.get_json()["error"]


def test_oversized_body_is_413(client: FlaskClient) -> None:
    body = json.dumps({"name": "x" * (MAX_BODY_BYTES + 10)})
    response = client.post("/api/task/task_group", data=body)
    assert response.status_code == 413
    assert "error" in response.get_json()


def test_unknown_path_and_method(client: FlaskClient) -> None:
    assert client.get("/api/nothing").status_code == 404
    assert "error" in client.get("/api/nothing").get_json()
    wrong = client.get("/api/task/task_group")
    assert wrong.status_code == 405 and "error" in wrong.get_json()


def test_api_token_when_set(tmp_path: Path, settings: Settings) -> None:
    from dataclasses import replace

    app = create_app(replace(settings, api_token="s3cret"))
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    refused = client.get("/api/task/node")
    assert refused.status_code == 401 and "error" in refused.get_json()
    assert client.get("/api/task/node", headers=bearer("wrong")).status_code == 401
    assert client.get("/api/task/node", headers={"Authorization": "s3cret"}).status_code == 401
    assert client.get("/api/task/node", headers=bearer("s3cret")).status_code == 200
    created = client.post("/api/task/task_group", json=template_body("t", ["/bin/true"]), headers=bearer("s3cret"))
    assert created.status_code == 200
    entry = client.get("/api/audit?limit=1", headers=bearer("s3cret")).get_json()["entries"][0]
    assert entry["action"] == "template.create" and entry["actor"].startswith("token@")
    close_app(app)


def test_open_api_records_anonymous_actor(client: FlaskClient) -> None:
    client.post("/api/task/task_group", json=template_body("t", ["/bin/true"]))
    entry = client.get("/api/audit").get_json()["entries"][0]
    assert entry["actor"].startswith("anonymous@")
    assert client.get("/api/audit?limit=0").status_code == 400
