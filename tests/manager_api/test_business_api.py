"""Businesses API without agents: validation, refusals, dry runs, reading; nothing written on any 4xx."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api import db
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from manager_api.models import AuditLog, Business, BusinessComponent, BusinessHistory, Node
from tests.support import free_port

from .business_helpers import add_node, business, comp, component, component_jobs, deploy, detail
from .conftest import beat


def nothing_written(redis_client: redis_lib.Redis, *nodes: str) -> bool:
    return (
        Business.select().count() == 0
        and BusinessComponent.select().count() == 0
        and BusinessHistory.select().count() == 0
        and all(not component_jobs(redis_client, n) for n in nodes)
    )


@pytest.fixture
def two_nodes(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", cpu=4, memory_mb=4096, labels={"zone": "eu"})
    add_node(client, redis_client, "n2", cpu=8, memory_mb=8192, gpus=1, labels={"zone": "us-east"})


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"components": [component("a")]}, "business_name: Missing data for required field."),
    (business(), "components: Must hold between 1 and 200 components."),
    (business(component("a"), component("a")), "components[1].component_id: component_id 'a' is already used"),
    (business(component("../a")), "components[0].component_id: '../a' must be 1-64 letters"),
    # Python's `$` matches before a final newline: the id check let "web\n" (a directory name on agents) in.
    (business(component("web\n")), "components[0].component_id: 'web\\n' must be 1-64 letters"),
    (business(component("a", type="vm")), "components[0].type: Must be one of"),
    (business(component("a", command="")), "components[0].command: a process component needs a command"),
    (business(component("a", type="docker")), "components[0].image_name: a docker component needs an image_name"),
    (
        business(component("a", type="docker", image_name="x:1", image_url="file:///etc/passwd")),
        "components[0].image_url: must start with http://, https:// or sftp://",
    ),
    (
        business(component("a", resource_requirements={"cpu_cores": -1})),
        "components[0].resource_requirements.cpu_cores: Must be greater than or equal to 0",
    ),
    (
        business(component("a", resource_requirements={"memory_mb": "lots"})),
        "components[0].resource_requirements.memory_mb: Not a valid integer.",
    ),
    (
        business(component("a", environment_variables={"PORT": 8080})),
        "components[0].environment_variables.PORT.value: Not a valid string.",
    ),
    (
        business(component("a", config_files=[{"path": "etc/ok", "content": ""}, {"path": "../x", "content": ""}])),
        "components[0].config_files[1].path: path '../x' climbs out of its root with '..'",
    ),
    (
        business(component("a", config_files=[{"path": "etc/a\x00b", "content": ""}])),
        "components[0].config_files[0].path: path contains a NUL byte",
    ),
    (
        business(component("a", config_files=[{"path": "/etc/a", "content": ""}, {"path": "etc/./a", "content": ""}])),
        "components[0].config_files[1].path: path 'etc/./a' is the same file as config_files[0]",
    ),
    (
        business(component("a", affinity={"require_gpu": "maybe"})),
        "components[0].affinity.require_gpu: Not a valid boolean.",
    ),
    (business(component("a", colour="red")), "components[0].colour: Unknown field."),
    (business(component("a"), business_id="has space"), "business_id: 'has space' must be 1-64 letters"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_bad_requests_are_400_naming_the_field_and_write_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None, body: dict[str, Any], message: str
) -> None:
    response = client.post("/api/businesses", json=body)
    assert response.status_code == 400
    got = response.get_json()
    assert message in got["error"], got["error"]
    assert got["status"] == "error" and got["message"] == got["error"]
    assert got["error"].startswith("Invalid request format: ")
    assert nothing_written(redis_client, "n1", "n2")


def test_malformed_json_and_bad_query(client: FlaskClient, two_nodes: None) -> None:
    response = client.post("/api/businesses", data="{nope")
    assert response.status_code == 400 and "body must be a JSON object" in response.get_json()["error"]
    response = client.post("/api/businesses?dry_run=perhaps", json=business(component("a")))
    assert response.status_code == 400 and "dry_run" in response.get_json()["error"]
    assert client.get("/api/businesses?page=0").status_code == 400
    assert client.get("/api/businesses?status=sleeping").status_code == 400


def test_refusal_is_409_with_a_reason_per_node_and_writes_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None
) -> None:
    add_node(client, redis_client, "n3", online=False)
    body = business(
        component("fits", resource_requirements={"cpu_cores": 1, "memory_mb": 1024}),
        component(
            "big", resource_requirements={"cpu_cores": 1, "memory_mb": 6000}, affinity={"node_labels": {"zone": "eu"}}
        ),
        component("gpu", resource_requirements={"gpu": True}, affinity={"node_labels": {"zone": "eu"}}),
    )
    got = deploy(client, body, expect=409)
    assert got["status"] == "error" and got["error"] == got["message"]
    assert set(got["rejections"]) == {"big", "gpu"}
    assert "host-n1: memory 4096 MB free < 6000 MB" in got["rejections"]["big"]
    assert "host-n2: label zone=eu missing (has zone=us-east)" in got["rejections"]["big"]
    assert "host-n3: offline" in got["rejections"]["big"]
    assert any(r.startswith("host-n1: no free GPU") for r in got["rejections"]["gpu"])
    assert got["rejection_summary"]["big"] == {"memory": 1, "cpu": 0, "gpu": 0, "labels": 1, "offline": 1}
    assert got["error"] == (
        "no node fits component big: memory on 1 node, labels on 1, offline on 1; "
        "no node fits component gpu: gpu on 1 node, labels on 1, offline on 1"
    )
    assert nothing_written(redis_client, "n1", "n2", "n3")


def add_many_nodes(redis_client: redis_lib.Redis, count: int, offline: int, memory_mb: int) -> None:
    """``count`` nodes written straight to the database (joining each through the API takes seconds), all
    but the last ``offline`` of them heartbeating."""
    facts = json.dumps({"cpu_count": 8, "memory_total_mb": memory_mb, "gpu_count": 0})
    rows = [
        {"id": f"m{i:04}", "hostname": f"many-{i:04}", "ip": "10.1.0.1", "facts": facts, "labels": "{}"}
        for i in range(count)
    ]
    with db.write_transaction():
        for start in range(0, count, 200):
            Node.insert_many(rows[start : start + 200]).execute()
    for row in rows[: count - offline]:
        beat(redis_client, row["id"])


@pytest.mark.parametrize("query", ["", "?dry_run=true"])
def test_refusal_over_a_thousand_nodes_stays_short_and_counts_every_node(
    client: FlaskClient, redis_client: redis_lib.Redis, query: str
) -> None:
    add_many_nodes(redis_client, 1000, offline=50, memory_mb=4096)
    body = business(component("web", resource_requirements={"memory_mb": 8192}), component("fits"))
    response = client.post(f"/api/businesses{query}", json=body)
    got = response.get_json()
    assert response.status_code == 409, got
    assert got["error"] == got["message"] == "no node fits component web: memory on 950 nodes, offline on 50"
    assert got["rejection_summary"] == {"web": {"memory": 950, "cpu": 0, "gpu": 0, "labels": 0, "offline": 50}}
    reasons = got["rejections"]["web"]
    assert reasons[:20] == [f"many-{i:04}: memory 4096 MB free < 8192 MB" for i in range(20)]
    assert reasons[20:] == ["… and 980 more nodes"] and list(got["rejections"]) == ["web"]
    assert len(response.data) < 4096, len(response.data)
    assert nothing_written(redis_client, *[f"m{i:04}" for i in range(0, 1000, 97)])


def test_dry_run_plans_and_writes_nothing(client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None) -> None:
    body = business(
        component("web", resource_requirements={"cpu_cores": 2, "memory_mb": 1024}),
        component("ml", resource_requirements={"cpu_cores": 1, "memory_mb": 1024, "gpu": True}),
        component("eu", affinity={"node_labels": {"zone": "eu"}}),
    )
    got = deploy(client, body, expect=200, query="?dry_run=true")
    assert (got["status"], got["message"]) == ("success", "plan only")
    where = {p["component_id"]: (p["node_id"], p["hostname"]) for p in got["plan"]}
    assert where == {"web": ("n2", "host-n2"), "ml": ("n2", "host-n2"), "eu": ("n1", "host-n1")}
    assert all("score" in p for p in got["plan"])
    assert nothing_written(redis_client, "n1", "n2")


def test_deploy_records_sends_and_reads_back(
    client: FlaskClient, redis_client: redis_lib.Redis, two_nodes: None
) -> None:
    body = business(
        component(
            "web",
            environment_variables={"DB_PASSWORD": "s3cret"},
            config_files=[{"path": "/etc/web/app.json", "content": '{"k": 1}'}],
            affinity={"node_labels": {"zone": "eu"}},
        ),
        {
            "component_id": "cache",
            "type": "docker",
            "image_name": "redis:7",
            "image_url": "https://example.com/redis.tar",
            "resource_requirements": {"cpu_cores": 0.5, "memory_mb": 256},
        },
        business_id="shop-1",
        business_name="my shop",
    )
    got = deploy(client, body)
    assert got == {"status": "success", "message": "deploying", "business_id": "shop-1"}
    jobs_n1 = component_jobs(redis_client, "n1")
    assert [kind for kind, _ in jobs_n1] == ["deploy"]
    spec = jobs_n1[0][1]
    assert (spec["business_id"], spec["component_id"], spec["generation"], spec["command"]) == (
        "shop-1",
        "web",
        1,
        "run-web",
    )
    assert spec["environment_variables"] == {"DB_PASSWORD": "s3cret"}
    assert spec["config_files"] == [{"path": "/etc/web/app.json", "content": '{"k": 1}'}]
    cache = [p for _, p in component_jobs(redis_client, "n2")]
    assert [(p["component_id"], p["image_name"], p["component_name"]) for p in cache] == [("cache", "redis:7", "cache")]

    shown = detail(client, "shop-1")
    assert (shown["business_name"], shown["status"], shown["rollback_on_failure"]) == ("my shop", "deploying", True)
    web = comp(shown, "web")
    assert (web["node_id"], web["hostname"], web["status"], web["generation"]) == ("n1", "host-n1", "pending", 1)
    assert web["environment_keys"] == ["DB_PASSWORD"] and "s3cret" not in str(shown)
    assert web["config_paths"] == ["/etc/web/app.json"] and web["resource_usage"] is None
    assert [(h["to"], h["component_id"]) for h in shown["history"]][-1] == ("deploying", None)
    assert client.get("/api/businesses/shop-1/components").get_json() == shown["components"]
    audit = AuditLog.select().where(AuditLog.action == "business.create").get()
    assert (audit.target, audit.actor) == ("shop-1", "anonymous@127.0.0.1")

    # The nodes API counts what the business reserves.
    node = client.get("/api/nodes/n2").get_json()
    assert node["reserved"]["cpu_cores"] == 0.5 and node["reserved"]["memory_mb"] == 256

    taken = deploy(client, body, expect=409)
    assert taken["error"] == "Business shop-1 already exists: update it with PUT /api/businesses/shop-1"
    assert (taken["status"], taken["message"], taken["business_id"]) == ("error", taken["error"], "shop-1")
    listing = client.get("/api/businesses?page_size=1").get_json()
    assert listing["total"] == 1 and listing["businesses"][0]["component_count"] == 2
    assert listing["businesses"][0]["component_states"] == {"pending": 2}
    assert client.get("/api/businesses?status=running").get_json()["total"] == 0


def test_generated_id_unknown_ids_and_update_id_mismatch(client: FlaskClient, two_nodes: None) -> None:
    business_id = deploy(client, business(component("a")))["business_id"]
    assert len(business_id) == 32
    for path in ("/api/businesses/nope", "/api/businesses/nope/components", "/api/businesses/" + "x" * 80):
        got = client.get(path)
        assert got.status_code == 404 and got.get_json()["error"] == "Business not found"
    assert client.post("/api/businesses/nope/stop").status_code == 404
    assert client.post("/api/businesses/nope/restart").status_code == 404
    assert client.put("/api/businesses/nope", json=business(component("a"))).status_code == 404
    got = client.put(f"/api/businesses/{business_id}", json=business(component("a"), business_id="other"))
    assert got.status_code == 400 and "business_id" in got.get_json()["error"]


def test_redis_down_is_503_and_writes_nothing(settings: Settings) -> None:
    app = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        got = app.test_client().post("/api/businesses", json=business(component("a")))
        assert got.status_code == 503 and "error" in got.get_json()
        assert Business.select().count() == 0 and BusinessComponent.select().count() == 0
    finally:
        close_app(app)
        db.close()
