"""The node inventory: GET /api/nodes(/id) and labels set through the API, merged with the agent's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api import db
from manager_api.api.presenters import nodes as node_presenters
from manager_api.models import AuditLog, Business, BusinessComponent, Node
from manager_api.services.nodes import manual_list as manual_nodes

from .conftest import answer, beat, forget_migration_history, join
from .tasks_helpers import create, host

FACTS = {
    "os": "Linux",
    "distro": "Debian GNU/Linux 12",
    "kernel": "6.1.0",
    "arch": "x86_64",
    "cpu_count": 8,
    "memory_total_mb": 16384,
    "gpu_count": 1,
    "gpus": [{"index": 0, "model": "NVIDIA A100"}],
    "addresses": ["10.0.0.1", "192.168.5.1"],
    "boot_time": 1.0,
    "python": "3.11.7",
    "labels": {"zone": "a", "role": "web"},
}


def put_labels(client: FlaskClient, node_id: str, labels: Any, expect: int = 200) -> dict[str, Any]:
    return answer(client.put(f"/api/nodes/{node_id}/labels", json={"labels": labels}), expect)


def node_of(client: FlaskClient, node_id: str) -> dict[str, Any]:
    return answer(client.get(f"/api/nodes/{node_id}"))


def _place(business_id: str, component_id: str, node_id: str, status: str, **kw: Any) -> None:
    business = Business.get_or_none(Business.business_id == business_id) or Business.create(
        business_id=business_id, business_name=f"name-{business_id}", spec="{}"
    )
    BusinessComponent.create(
        business=business,
        component_id=component_id,
        component_name=component_id,
        type="process",
        node=node_id,
        status=status,
        **kw,
    )


def test_list_shows_facts_labels_capacity_and_reservations(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    assert client.get("/api/nodes").get_json() == {"nodes": []}
    join(client, "n1", "web-01", "10.0.0.1", facts=FACTS)
    join(client, "n2", "db-01", "10.0.0.2")
    beat(redis_client, "n1", cpu=42.4, memory=10)
    _place("b1", "api", "n1", "running", cpu_cores=2, memory_mb=4096, gpus=1)
    _place("b1", "worker", "n1", "pending", cpu_cores=0.5, memory_mb=512)
    _place("b1", "old", "n1", "stopped", cpu_cores=4, memory_mb=4096)

    first, second = client.get("/api/nodes").get_json()["nodes"]
    assert (first["id"], first["hostname"], first["ip"], first["status"]) == ("n1", "web-01", "10.0.0.1", "online")
    assert first["cpu_usage_percent"] == 42.4 and first["last_heartbeat"].endswith("Z")
    assert first["facts"] == {k: v for k, v in FACTS.items() if k not in ("boot_time", "python", "labels")}
    assert first["labels"] == first["agent_labels"] == {"role": "web", "zone": "a"} and first["api_labels"] == {}
    assert first["capacity"] == {"cpu_cores": 8.0, "memory_mb": 16384, "gpus": 1}
    assert first["reserved"] == {"cpu_cores": 2.5, "memory_mb": 4608, "gpus": 1}
    assert first["free"] == {"cpu_cores": 5.5, "memory_mb": 11776, "gpus": 0}
    # A node whose agent sent no facts: nothing to offer, never an error.
    assert (second["status"], second["last_heartbeat"], second["cpu_usage_percent"]) == ("offline", None, 0.0)
    assert second["capacity"] == second["reserved"] == {"cpu_cores": 0.0, "memory_mb": 0, "gpus": 0}
    assert second["facts"] == {"gpu_count": 0, "gpus": [], "addresses": ["10.0.0.2"]}


def test_detail_lists_the_components_placed_on_the_node(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts=FACTS)
    join(client, "n2", "web-02", "10.0.0.2", facts=FACTS)
    _place("b1", "api", "n1", "running", cpu_cores=1, memory_mb=256, pid=4242, generation=3)
    _place("b1", "gone", "n1", "stopping", cpu_cores=1, memory_mb=256, desired="removed")
    _place("b2", "cache", "n2", "running", cpu_cores=1, memory_mb=256)

    node = node_of(client, "n1")
    # The removed component still holds its share until its node confirms the stop.
    assert node["id"] == "n1" and node["reserved"] == {"cpu_cores": 2.0, "memory_mb": 512, "gpus": 0}
    assert [(c["business_id"], c["component_id"]) for c in node["components"]] == [("b1", "api"), ("b1", "gone")]
    api, gone = node["components"]
    assert api["business_name"] == "name-b1" and api["status"] == "running" and api["generation"] == 3
    assert api["pid"] == 4242 and api["reserves"] is True
    assert api["requested"] == {"cpu_cores": 1.0, "memory_mb": 256, "gpus": 0}
    assert (gone["desired"], gone["reserves"]) == ("removed", True)

    for unknown in ("nope", "x" * 200):
        response = client.get(f"/api/nodes/{unknown}")
        assert response.status_code == 404 and response.get_json() == {"error": "Node not found"}


def test_api_labels_win_over_the_agent_and_survive_a_rejoin(client: FlaskClient) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts=FACTS)
    answer = put_labels(client, "n1", {"zone": "b", "tier": "gold"})
    assert answer["labels"] == {"role": "web", "tier": "gold", "zone": "b"}
    assert answer["api_labels"] == {"tier": "gold", "zone": "b"}
    assert answer["agent_labels"] == {"role": "web", "zone": "a"}

    # The agent restarts with other labels: its own change, the API's stay and still win.
    join(client, "n1", "web-01", "10.0.0.1", facts={**FACTS, "labels": {"zone": "c", "role": "api", "rack": "7"}})
    node = node_of(client, "n1")
    assert node["labels"] == {"rack": "7", "role": "api", "tier": "gold", "zone": "b"}
    assert node["agent_labels"] == {"rack": "7", "role": "api", "zone": "c"}

    # PUT replaces the API's set as a whole; {} clears it and the agent's show through again.
    assert put_labels(client, "n1", {"tier": "silver"})["labels"] == {
        "rack": "7",
        "role": "api",
        "tier": "silver",
        "zone": "c",
    }
    assert put_labels(client, "n1", {})["labels"] == {"rack": "7", "role": "api", "zone": "c"}
    assert json.loads(Node.get_by_id("n1").api_labels) == {}

    # The manual's node list keeps its shape and shows the effective labels.
    listed = client.get("/api/task/node").get_json()["nodes"][0]
    assert set(listed) == {"ip", "status", "resources", "id", "hostname", "last_heartbeat", "labels", "ready"}
    assert listed["labels"] == {"rack": "7", "role": "api", "zone": "c"}

    entries = AuditLog.select().where(AuditLog.action == "node.labels").order_by(AuditLog.id)
    assert [json.loads(e.detail)["api_labels"] for e in entries] == [
        {"tier": "gold", "zone": "b"},
        {"tier": "silver"},
        {},
    ]
    assert {e.actor for e in entries} == {"anonymous@127.0.0.1"} and {e.target for e in entries} == {"n1"}


def test_label_validation_names_the_field_and_writes_nothing(client: FlaskClient) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts=FACTS)
    put_labels(client, "n1", {"tier": "gold"})
    cases: list[tuple[Any, str]] = [
        ({"labels": {"bad key": "x"}}, "labels"),
        ({"labels": {"zone=us": "x"}}, "labels"),
        ({"labels": {"": "x"}}, "labels"),
        ({"labels": {"zone": ""}}, "labels"),
        ({"labels": {"zone": "  "}}, "labels"),
        ({"labels": {"zone": 5}}, "labels"),
        ({"labels": {"zone": "x" * 256}}, "labels"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"labels": ["zone=a"]}, "labels"),
        ({"labels": None}, "labels"),
        ({}, "labels"),
        ({"labels": {}, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = client.put("/api/nodes/n1/labels", json=body)
        answer = response.get_json()
        assert response.status_code == 400, (body, answer)
        assert answer["error"].startswith(f"Invalid request format: {field}"), (body, answer)
    assert client.put("/api/nodes/n1/labels", data="{bad json").status_code == 400
    assert client.put("/api/nodes/ghost/labels", json={"labels": {"a": "b"}}).status_code == 404
    node = Node.get_by_id("n1")
    assert json.loads(node.api_labels) == {"tier": "gold"}
    assert json.loads(node.labels) == {"role": "web", "tier": "gold", "zone": "a"}
    assert AuditLog.select().where(AuditLog.action == "node.labels").count() == 1
    # Keys and values are trimmed; dots, dashes and underscores are fine in keys.
    assert put_labels(client, "n1", {" team.io-x_y ": " ops "})["api_labels"] == {"team.io-x_y": "ops"}


def test_fleet_task_label_targets_see_api_labels(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts=FACTS)
    join(client, "n2", "web-02", "10.0.0.2", facts=FACTS)
    beat(redis_client, "n1")
    beat(redis_client, "n2")
    put_labels(client, "n2", {"role": "canary"})
    task = create(client, targets=["role=canary"])
    assert [h["host_id"] for h in task["hosts"]] == ["n2"] and host(task, "n2")["status"] == "pending"
    task = create(client, targets=["role=web"])
    assert [h["host_id"] for h in task["hosts"]] == ["n1"]


def test_an_older_database_gains_the_api_labels_column(tmp_path: Path, redis_url: str) -> None:
    path = str(tmp_path / "old.db")
    db.init_db(path)
    db.database.execute_sql("ALTER TABLE node DROP COLUMN api_labels")
    forget_migration_history()  # made before the migration history
    db.database.execute_sql(
        "INSERT INTO node (id, hostname, ip, facts, labels, interval, version, status, "
        "registered_at) VALUES ('n1', 'h', '1.2.3.4', '{}', '{\"a\": \"b\"}', 5, '', 1, "
        "'2026-01-01 00:00:00')"
    )
    db.close()
    db.init_db(path)
    try:
        assert "api_labels" in {c.name for c in db.database.get_columns("node")}
        node = Node.get_by_id("n1")
        assert (json.loads(node.labels), json.loads(node.api_labels)) == ({"a": "b"}, {})
    finally:
        db.close()


def test_manual_node_list_is_unchanged_by_the_inventory(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    # The manual's list answers from its own fast path; it must not start reading reservations or facts.
    join(client, "n1", "web-01", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1", cpu=12, memory=34)
    _place("b1", "api", "n1", "running", cpu_cores=2, memory_mb=4096)
    listed = node_presenters.manual_list_json(manual_nodes.read(redis_client, 3))
    assert listed == [
        {
            "ip": "10.0.0.1",
            "status": 0,
            "resources": "cpu_usage_percent:12,memory_usage_percent:34",
            "id": "n1",
            "hostname": "web-01",
            "last_heartbeat": listed[0]["last_heartbeat"],
            "labels": {"role": "web", "zone": "a"},
            "ready": True,
        }
    ]
