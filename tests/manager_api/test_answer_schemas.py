"""Real answers of the API validated against the answer schema their route declares (``@documented(answer=...)``,
schemas/answers/): the schemas are strict (unknown fields refused, every field required, JSON types not
converted), so a presenter that adds, drops, renames or retypes a field fails here until its schema follows,
and the OpenAPI document never describes answers the API does not give."""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema

from manager_api.api.route_docs import JSON, LOOSE_ARRAY, LOOSE_OBJECT, route_doc
from manager_api.api.schemas.answers.common import Int
from manager_api.api.schemas.answers.nodes import ManualNodeAnswer
from manager_api.background.duties import Duties
from manager_api.models import BusinessComponent, NodeMetric, utcnow
from shared.api import HEALTH_PATH, OPENAPI_PATH
from tests.support import wait_until

from . import app_helpers, business_helpers, tasks_helpers
from .conftest import beat, join, template_body

# What a worker_agent sends at its join (worker_agent/metrics.py node_document): the §5.1.1 fields the
# inventory shows.
AGENT_FACTS: dict[str, Any] = {
    "cpu_count": 4,
    "memory_total_mb": 8192,
    "gpu_count": 0,
    "os": "Linux",
    "kernel": "6.1.0",
    "arch": "x86_64",
    "addresses": ["10.0.0.1"],
    "node": {
        "hostname": "host-n1",
        "agentAddress": "10.0.0.1:0",
        "os": {"name": "Linux", "version": "Debian 12", "cpus": 4, "architecture": "x86_64"},
        "memory": {"total": 8589934592, "ram": 8589934592},
        "networks": [
            {
                "address": "10.0.0.1",
                "name": "eth0",
                "mtu": 1500,
                "broadcast": "10.0.0.255",
                "netmask": "255.255.255.0",
                "hwaddr": "02:42:AC:11:00:02",
                "type": "Ethernet",
            }
        ],
        "disks": [{"dirName": "/", "devName": "/dev/sda1", "sysTypeName": "ext4", "option": "rw", "total": 10**11}],
        "tags": ["web"],
    },
}


class Checker:
    """Calls the API and validates each answer against the schema its route declares."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client
        self.checked: set[str] = set()
        """The endpoints whose answer was validated."""

    def __call__(self, method: str, path: str, expect: int = 200, json: Any = None) -> Any:
        response = self.client.open(path, method=method, json=json)
        assert response.status_code == expect, (method, path, response.get_json())
        endpoint, _args = self.app.url_map.bind("localhost").match(path.partition("?")[0], method)
        doc = route_doc(self.app.view_functions[endpoint])
        assert doc is not None and doc.answer not in (LOOSE_OBJECT, LOOSE_ARRAY), f"{endpoint}: no answer schema"
        assert expect == doc.status or expect in doc.extra_status, f"{endpoint}: {expect} is not documented"
        schema = doc.answer
        assert isinstance(schema, type) and issubclass(schema, Schema)
        body = response.get_json()
        errors = schema(many=doc.many).validate(body)
        assert not errors, f"{method} {path} answered what {schema.__name__} does not describe: {errors}\n{body}"
        self.checked.add(endpoint)
        return body


def test_the_schemas_are_strict() -> None:
    # What makes the tests below catch drift: an undeclared field, a missing one, a null where none is
    # documented, a JSON type that marshmallow would otherwise convert.
    node = {
        "ip": "10.0.0.1",
        "status": 0,
        "resources": "cpu_usage_percent:1,memory_usage_percent:2",
        "id": "n1",
        "hostname": "h",
        "last_heartbeat": None,
        "labels": {},
        "ready": True,
    }
    assert ManualNodeAnswer().validate(node) == {}
    assert set(ManualNodeAnswer().validate({**node, "new_field": 1})) == {"new_field"}
    assert set(ManualNodeAnswer().validate({k: v for k, v in node.items() if k != "ready"})) == {"ready"}
    assert set(ManualNodeAnswer().validate({**node, "hostname": None})) == {"hostname"}
    assert set(ManualNodeAnswer().validate({**node, "status": "0"})) == {"status"}
    assert set(ManualNodeAnswer().validate({**node, "status": 2})) == {"status"}  # a closed set
    assert set(ManualNodeAnswer().validate({**node, "ready": 1})) == {"ready"}
    assert Int().deserialize(3) == 3


def test_nodes_tasks_schedules_templates_deployments_audit(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    call = Checker(app, client)
    join(client, "n1", "host-n1", "10.0.0.1", facts=AGENT_FACTS)
    beat(redis_client, "n1")
    tasks_helpers.add_node(client, redis_client, "n2", "host-n2", "10.0.0.2", labels={"role": "db"}, online=False)
    NodeMetric.create(node="n1", at=utcnow(), cpu_percent=12.5, memory_percent=40.0)

    assert {n["status"] for n in call("GET", "/api/task/node")["nodes"]} == {0, 1}
    assert len(call("GET", "/api/nodes")["nodes"]) == 2
    call("GET", "/api/nodes?q=tags:web")
    call("GET", "/api/nodes/n1")
    call("GET", "/api/nodes/n2")  # offline, with no §5.1.1 document: its facts tell what they can
    call("PUT", "/api/nodes/n1/labels", json={"labels": {"zone": "a"}})
    call("PATCH", "/api/nodes/n1/labels", json={"labels": {"zone": None, "rack": "r1"}})
    assert call("PUT", "/api/nodes/n1/tags", json={"tags": ["db"]})["api_tags"] == ["db"]
    assert call("DELETE", "/api/nodes/n1/tags")["api_tags"] is None
    # The duties may have stored a sample of their own (from the heartbeat) beside this test's.
    assert 12.5 in call("GET", "/api/nodes/n1/metrics")["cpu_percent"]
    call("POST", "/api/nodes/n1/forget-secret")

    # Fleet tasks: one that ran on n1 (with output and times), one pending, started, canceled.
    task = call("POST", "/api/tasks", 201, json={"name": "t", "command": "echo hi", "targets": ["*", "nowhere"]})
    tasks_helpers.finish(redis_client, task["task_id"], "n1", stdout="hi\n")
    wait_until(lambda: tasks_helpers.detail(client, task["task_id"])["status"] != "running", what="the task ended")
    done = call("GET", f"/api/tasks/{task['task_id']}")
    assert any(h["execution_time"] is not None for h in done["hosts"])
    pending = call("POST", "/api/tasks", 201, json={"name": "p", "command": "true", "targets": ["n1"], "start": False})
    call("POST", f"/api/tasks/{pending['task_id']}/start")
    call("POST", f"/api/tasks/{pending['task_id']}/cancel")
    call("POST", "/api/tasks?wait=0.1", 201, json={"name": "w", "command": "true", "targets": ["n1"]})
    call("GET", "/api/tasks")
    call("GET", "/api/tasks?status=completed&page_size=1")

    schedule = call(
        "POST", "/api/schedules", 201, json={"name": "s", "command": "true", "targets": ["*"], "cron": "0 * * * *"}
    )
    call("POST", "/api/schedules", 201, json={"name": "i", "command": "true", "targets": ["*"], "interval": 60})
    call("GET", "/api/schedules")
    call("GET", f"/api/schedules/{schedule['id']}")
    call("POST", f"/api/schedules/{schedule['id']}/pause")
    call("POST", f"/api/schedules/{schedule['id']}/resume")
    call("DELETE", f"/api/schedules/{schedule['id']}")

    call("POST", "/api/task/task_group", json=template_body("tpl", ["echo a"], ["echo b"]))
    pinned = template_body("pinned", ["true"])
    pinned["task_groups"][0]["tasks"][0]["config"]["host"] = "host-n1"
    call("POST", "/api/task/task_group", json=pinned)
    call("POST", "/api/task/query", json={"name": "pinned"})
    call("GET", "/api/templates")
    call("GET", "/api/templates/tpl")
    deployment = call("POST", "/api/task/task_group/deploy", json={"name": "tpl"})
    call("POST", "/api/task/task_group/query", json={"id": deployment["id"]})
    call("GET", "/api/deployments")
    call("GET", f"/api/deployments/{deployment['id']}")
    call("GET", f"/deployments/{deployment['id']}")
    call("POST", "/api/task/task_group/stop", json={"id": deployment["id"]})
    call("DELETE", "/api/templates/pinned")

    call("DELETE", "/api/nodes/n2")  # offline: forgotten
    call("GET", "/api/audit")
    call("GET", HEALTH_PATH)
    assert len(call.checked) == 33  # endpoints, each validated at least once


def test_businesses(app: Flask, client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties) -> None:
    call = Checker(app, client)
    business_helpers.add_node(client, redis_client, "n1", labels={"role": "web"})
    body = business_helpers.business(
        business_helpers.component("web", environment_variables={"K": "v"}),
        business_helpers.component("db"),
        business_id="shop",
    )
    plan = call("POST", "/api/businesses?dry_run=true", 200, json=body)
    assert [p["node_id"] for p in plan["plan"]] == ["n1", "n1"]
    call("POST", "/api/businesses", 201, json=body)
    business_helpers.report(redis_client, "shop", "web", "n1", "running", pid=4242, cpu_percent=5.0, memory_mb=64.0)
    wait_until(
        lambda: BusinessComponent.get(BusinessComponent.component_id == "web").status == "running",
        what="the component running",
    )
    shown = call("GET", "/api/businesses/shop")
    assert shown["history"]
    call("GET", "/api/businesses")
    call("GET", "/api/businesses/shop/components")
    call("GET", "/api/businesses/shop/metrics")
    call("GET", "/api/nodes/n1")  # with its components
    updated = business_helpers.business(business_helpers.component("web", command="run-web --v2"), business_id="shop")
    assert call("PUT", "/api/businesses/shop", json=updated)["removed"] == ["db"]
    call("POST", "/api/businesses/shop/restart")
    call("POST", "/api/businesses/shop/stop")
    for component_id in ("web", "db"):
        business_helpers.report(redis_client, "shop", component_id, "n1", "stopped", generation=2)
    time.sleep(0.2)
    call("GET", "/api/businesses/shop")


def test_apps(app: Flask, client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties) -> None:
    call = Checker(app, client)
    business_helpers.add_node(client, redis_client, "n1")
    agent = app_helpers.Agent(redis_client)
    created = call("POST", "/api/apps", 201, json=app_helpers.app_body("web", instances=2))
    wait_until(
        lambda: agent.serve(["n1"]) is not None and app_helpers.show(client)["counts"]["running"] == 2,
        timeout=20,
        what="two instances running",
    )
    shown = call("GET", "/api/apps/web")
    assert created["name"] == shown["name"] and shown["instances"][0]["pid"] is not None
    call("GET", "/api/apps")
    call("POST", "/api/apps/web/scale", json={"instances": 1})
    call("PUT", "/api/apps/web", json=app_helpers.app_body("web", instances=1, envs={"A": "b"}))
    call("POST", "/api/apps/web/restart")
    call("POST", "/api/apps/web/stop")
    instance = call("POST", "/api/apps/web/start")["instances"][0]["id"]
    call("GET", f"/api/apps/web/instances/{instance}/logs?tail=10")
    call("DELETE", "/api/apps/web")


def test_every_json_answer_but_the_document_has_a_schema(app: Flask) -> None:
    # The document itself is OpenAPI's to describe; the task output stream is Server-Sent Events only.
    loose = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if (doc := route_doc(view)) is not None and JSON in doc.media and doc.answer in (LOOSE_OBJECT, LOOSE_ARRAY)
    }
    assert loose == {"docs.openapi"}, f"answers without a schema: {sorted(loose)}"
    assert app.url_map.bind("localhost").match(OPENAPI_PATH)[0] == "docs.openapi"


def test_tokens(app: Flask, client: FlaskClient) -> None:
    call = Checker(app, client)
    created = call("POST", "/api/tokens", 201, json={"name": "ops", "role": "operator", "nodeQuery": "tags:web"})
    call("POST", "/api/tokens", 201, json={"name": "ci", "role": "viewer", "expiresIn": "30d"})
    call("GET", "/api/tokens")
    call("GET", f"/api/tokens/{created['id']}")
    assert call("DELETE", f"/api/tokens/{created['id']}")["state"] == "revoked"
    assert call.checked == {"tokens.create", "tokens.listing", "tokens.detail", "tokens.revoke"}
