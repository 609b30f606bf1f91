"""PATCH /api/nodes/{id}/labels: a JSON merge patch (RFC 7396) of the API labels; PUT keeps replacing them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from manager_api.models import AuditLog, Node
from manager_api.services.nodes.labels import MAX_LABELS

from .conftest import answer, join


def patch(client: FlaskClient, labels: Any, expect: int = 200, node_id: str = "n1") -> dict[str, Any]:
    return answer(client.patch(f"/api/nodes/{node_id}/labels", json={"labels": labels}), expect)


@pytest.fixture
def node(client: FlaskClient) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts={"labels": {"zone": "a", "role": "web"}})
    answer(client.put("/api/nodes/n1/labels", json={"labels": {"rack": "r7", "tier": "gold"}}))


def test_a_patch_merges_and_null_removes(client: FlaskClient, node: None) -> None:
    got = patch(client, {"tier": "silver", "owner": "ops", "rack": None, "never-there": None})
    assert got["api_labels"] == {"owner": "ops", "tier": "silver"}
    assert got["labels"] == {"owner": "ops", "role": "web", "tier": "silver", "zone": "a"}
    assert got["agent_labels"] == {"role": "web", "zone": "a"} and got["id"] == "n1"
    # The same answer as GET /api/nodes/{id}, as PUT gives.
    assert got == answer(client.get("/api/nodes/n1"))
    # An API label may shadow the agent's; removing it shows the agent's again.
    assert patch(client, {"zone": "b"})["labels"]["zone"] == "b"
    assert patch(client, {"zone": None})["labels"]["zone"] == "a"
    assert patch(client, {})["api_labels"] == {"owner": "ops", "tier": "silver"}
    entries = list(AuditLog.select().where(AuditLog.action == "node.labels").order_by(AuditLog.id))
    first = json.loads(entries[1].detail)  # entries[0] is the fixture's PUT
    assert first == {
        "patch": {"tier": "silver", "owner": "ops", "rack": None, "never-there": None},
        "api_labels": {"owner": "ops", "tier": "silver"},
        "previous": {"rack": "r7", "tier": "gold"},
    }
    assert entries[1].actor == "anonymous@127.0.0.1" and entries[1].target == "n1"
    # PUT still replaces the whole set.
    put = answer(client.put("/api/nodes/n1/labels", json={"labels": {"only": "this"}}))
    assert put["api_labels"] == {"only": "this"}


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({"bad key": "x"}, "labels"),
        ({"k": ""}, "labels"),
        ({"k": 3}, "labels"),
        ("rack=r7", "labels"),
        ({f"k{i}": "v" for i in range(2 * MAX_LABELS + 1)}, "labels"),
    ],
)
def test_a_bad_patch_names_the_field_and_changes_nothing(
    client: FlaskClient, node: None, labels: Any, field: str
) -> None:
    got = patch(client, labels, 400)
    assert got["error"].startswith(f"Invalid request format: {field}"), got
    assert field in got["errors"]
    assert json.loads(Node.get_by_id("n1").api_labels) == {"rack": "r7", "tier": "gold"}


def test_a_patch_that_would_make_too_many_labels_is_a_conflict(client: FlaskClient, node: None) -> None:
    too_many = {f"k{i}": "v" for i in range(MAX_LABELS - 1)}
    got = patch(client, too_many, 409)
    assert got == {
        "error": f"Node n1 would hold {MAX_LABELS + 1} API labels, at most {MAX_LABELS}: remove some in the same "
        "patch (null) or replace them all with PUT"
    }
    assert json.loads(Node.get_by_id("n1").api_labels) == {"rack": "r7", "tier": "gold"}
    assert len(patch(client, {**too_many, "rack": None})["api_labels"]) == MAX_LABELS


def test_patch_bodies_and_ids(client: FlaskClient, node: None) -> None:
    assert answer(client.patch("/api/nodes/n1/labels", json={}), 400)["errors"] == {
        "labels": ["Missing data for required field."]
    }
    assert answer(client.patch("/api/nodes/n1/labels", data="{bad"), 400)["error"].startswith("Invalid request format")
    assert patch(client, {"a": "b"}, 404, node_id="nope") == {"error": "Node not found"}
    assert patch(client, {"a": "b"}, 404, node_id="x" * 100) == {"error": "Node not found"}


def test_the_node_list_takes_a_node_query_on_what_it_shows(client: FlaskClient, node: None) -> None:
    join(client, "n2", "db-01", "10.0.1.9", facts={"labels": {"zone": "b"}, "cpu_count": 16})

    def ids(q: str) -> list[str]:
        return [n["id"] for n in answer(client.get("/api/nodes", query_string={"q": q}))["nodes"]]

    assert ids("*") == ["n1", "n2"] == [n["id"] for n in answer(client.get("/api/nodes"))["nodes"]]
    assert ids("labels.zone:a") == ["n1"]
    assert ids("web-*") == ["n1"]
    assert ids("ip:[10.0.0.0 TO 10.0.0.255]") == ["n1"]
    assert ids("facts.cpu_count:>8 OR labels.tier:gold") == ["n1", "n2"]
    assert ids("labels.rack:r7 AND NOT hostname:db-01") == ["n1"]
    assert ids("status:offline") == ["n1", "n2"]
    bad = client.get("/api/nodes", query_string={"q": "labels.zone:(a OR"})
    assert bad.status_code == 400
    assert bad.get_json()["error"].startswith("Invalid request format: q: ")
