"""Failures answer the error JSON too: Redis unreachable → 503 with nothing written, a bug → 500."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from manager_api.app import close_app, create_app
from manager_api.config import Settings
from manager_api.models import AuditLog, Deployment, DeploymentTask
from tests.support import free_port

from .conftest import template_body


def test_unreachable_redis_is_503_and_writes_nothing(settings: Settings, client: FlaskClient) -> None:
    client.post("/api/task/task_group", json=template_body("app", ["/a"]))
    dead = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    dead_client = dead.test_client()
    nodes = dead_client.get("/api/task/node")
    assert nodes.status_code == 503 and "error" in nodes.get_json()
    deployed = dead_client.post("/api/task/task_group/deploy", json={"name": "app"})
    assert deployed.status_code == 503 and "error" in deployed.get_json()
    assert Deployment.select().count() == 0 and DeploymentTask.select().count() == 0
    assert AuditLog.select().where(AuditLog.action == "deployment.create").count() == 0
    close_app(dead)


def test_unexpected_errors_are_a_json_500(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings)

    def boom() -> str:
        raise RuntimeError("bug")

    app.add_url_rule("/boom", view_func=boom)
    response = app.test_client().get("/boom")
    assert (response.status_code, response.get_json()) == (500, {"error": "Internal server error"})
    assert any(r.exc_info for r in caplog.records if "unhandled error" in r.getMessage())
    close_app(app)
