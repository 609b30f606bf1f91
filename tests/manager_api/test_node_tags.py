"""The node document of document 003 §5.1.1 in GET /api/nodes, tags set through PUT /api/nodes/{id}/tags, and
node queries (GET /api/nodes?q=) over both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api import db
from manager_api.models import AuditLog, Node

from .conftest import answer, beat, forget_migration_history, join

GIB = 1024**3


def node_document(
    hostname: str, cpus: int, memory: int, address: str, disks: list[str], tags: list[str]
) -> dict[str, Any]:
    """The node document an agent sends in its join facts (worker_agent/metrics.node_document)."""
    return {
        "hostname": hostname,
        "agentAddress": f"http://{address}:8081",
        "os": {"name": "Linux", "version": "12", "cpus": cpus, "architecture": "x86_64"},
        "memory": {"total": memory, "ram": memory},
        "networks": [
            {
                "address": "127.0.0.1",
                "name": "lo",
                "mtu": 65536,
                "broadcast": "",
                "netmask": "255.0.0.0",
                "hwaddr": "",
                "type": "Loopback",
            },
            {
                "address": address,
                "name": "eth0",
                "mtu": 1500,
                "broadcast": "10.0.0.255",
                "netmask": "255.255.255.0",
                "hwaddr": "02:FC:00:00:00:01",
                "type": "Ethernet",
            },
        ],
        "disks": [
            {"dirName": d, "devName": "/dev/vda", "sysTypeName": "ext4", "option": "rw,relatime", "total": 100 * GIB}
            for d in disks
        ],
        "tags": tags,
    }


def join_with(client: FlaskClient, node_id: str, hostname: str, ip: str, **document: Any) -> None:
    facts = {"os": "Linux", "cpu_count": document["cpus"], "node": node_document(hostname, address=ip, **document)}
    join(client, node_id, hostname, ip, facts=facts)


def join_fleet(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    """web-1 (4 cpus, 16 GiB, /data), web-2 (2 cpus, 4 GiB), db-1 (16 cpus, 64 GiB, /data, offline)."""
    join_with(client, "w1", "web-1", "10.0.0.11", cpus=4, memory=16 * GIB, disks=["/", "/data"], tags=["web", "ssd"])
    join_with(client, "w2", "web-2", "10.0.0.12", cpus=2, memory=4 * GIB, disks=["/"], tags=["web"])
    join_with(client, "d1", "db-1", "10.0.1.5", cpus=16, memory=64 * GIB, disks=["/", "/data"], tags=["db", "ssd"])
    beat(redis_client, "w1")
    beat(redis_client, "w2")


def put_tags(client: FlaskClient, node_id: str, tags: Any, expect: int = 200) -> dict[str, Any]:
    return answer(client.put(f"/api/nodes/{node_id}/tags", json={"tags": tags}), expect)


def found(client: FlaskClient, query: str) -> list[str]:
    return [n["id"] for n in answer(client.get("/api/nodes", query_string={"q": query}))["nodes"]]


def test_the_node_shows_its_document_beside_what_it_showed_before(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join_fleet(client, redis_client)
    node = answer(client.get("/api/nodes/w1"))
    sent = node_document("web-1", 4, 16 * GIB, "10.0.0.11", ["/", "/data"], ["web", "ssd"])
    for key in ("agentAddress", "os", "memory", "networks", "disks"):
        assert node[key] == sent[key], key
    assert (node["tags"], node["agent_tags"], node["api_tags"]) == (["web", "ssd"], ["web", "ssd"], None)
    assert (node["id"], node["hostname"], node["status"], node["facts"]["os"]) == ("w1", "web-1", "online", "Linux")
    assert node["components"] == [] and "node" not in node["facts"]
    assert [n["id"] for n in answer(client.get("/api/nodes"))["nodes"]] == ["w1", "w2", "d1"]


def test_an_agent_without_the_document_reads_from_its_facts_and_junk_is_dropped(client: FlaskClient) -> None:
    facts = {"os": "Linux", "kernel": "6.1.0", "arch": "aarch64", "cpu_count": 8, "memory_total_mb": 2048}
    join(client, "old", "old-1", "10.0.0.9", facts={**facts, "addresses": ["10.0.0.9", "fd00::9"]})
    node = answer(client.get("/api/nodes/old"))
    assert node["os"] == {"name": "Linux", "version": "6.1.0", "cpus": 8, "architecture": "aarch64"}
    assert node["memory"] == {"total": 2048 * 1024 * 1024, "ram": 2048 * 1024 * 1024}
    assert [n["address"] for n in node["networks"]] == ["10.0.0.9", "fd00::9"]
    assert (node["agentAddress"], node["disks"], node["tags"], node["api_tags"]) == (None, [], [], None)
    assert found(client, "os.cpus:>4 AND networks.address:10.0.0.*") == ["old"]

    junk = {"os": "Linux", "node": {"os": ["x"], "memory": {"total": {"deep": 1}}, "networks": "eth0", "tags": "a"}}
    join(client, "odd", "odd-1", "10.0.0.8", facts=junk)
    node = answer(client.get("/api/nodes/odd"))
    assert node["os"] == {"name": None, "version": None, "cpus": None, "architecture": None}
    assert node["memory"] == {"total": None, "ram": None} and node["networks"] == [] and node["tags"] == []
    join(client, "bad", "bad-1", "10.0.0.7", facts={"node": {"tags": ["ok", "not ok"]}})
    assert answer(client.get("/api/nodes/bad"))["agent_tags"] == []  # a bad tag: the agent's set ignored


def test_queries_select_by_tags_cpus_memory_addresses_and_disks(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join_fleet(client, redis_client)
    assert found(client, "tags:web") == ["w1", "w2"]
    assert found(client, "tags:ssd AND NOT tags:db") == ["w1"]
    assert found(client, "os.cpus:>2") == ["w1", "d1"]
    assert found(client, "tags:web AND os.cpus:>2") == ["w1"]
    assert found(client, "memory.total:>8000000000") == ["w1", "d1"]
    assert found(client, "networks.address:10.0.0.*") == ["w1", "w2"]
    assert found(client, "networks.address:[10.0.0.12 TO 10.0.1.10]") == ["w2", "d1"]
    assert found(client, r"disks.dirName:\/data") == ["w1", "d1"]
    assert found(client, 'disks.dirName:"/" AND status:offline') == ["d1"]
    assert found(client, "networks.type:Loopback") == ["w1", "w2", "d1"]
    refused = answer(client.get("/api/nodes", query_string={"q": "disks.dirName:/data"}), 400)
    assert refused["error"].startswith("Invalid request format: q: ") and "quote a path" in refused["error"]


def test_api_tags_replace_the_agents_survive_a_rejoin_and_are_audited(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join_fleet(client, redis_client)
    node = put_tags(client, "w1", [" appserver ", "hpc", "appserver"])
    assert (node["tags"], node["api_tags"], node["agent_tags"]) == (
        ["appserver", "hpc"],
        ["appserver", "hpc"],
        ["web", "ssd"],
    )
    assert node["id"] == "w1" and "components" in node  # answered as GET /api/nodes/{id}
    assert found(client, "tags:appserver AND tags:hpc") == ["w1"]
    assert found(client, "tags:web") == ["w2"]

    # The agent restarts with other tags: its own change, the API's stay the node's tags.
    join_with(client, "w1", "web-1", "10.0.0.11", cpus=4, memory=16 * GIB, disks=["/"], tags=["edge"])
    node = answer(client.get("/api/nodes/w1"))
    assert (node["tags"], node["api_tags"], node["agent_tags"]) == (
        ["appserver", "hpc"],
        ["appserver", "hpc"],
        ["edge"],
    )
    assert [d["dirName"] for d in node["disks"]] == ["/"]  # the rest of the document is the agent's latest

    assert put_tags(client, "w1", [])["tags"] == []  # no tags at all, the agent's included
    assert found(client, "tags:edge") == []
    handed_back = answer(client.delete("/api/nodes/w1/tags"))
    assert (handed_back["tags"], handed_back["api_tags"]) == (["edge"], None)
    put_tags(client, "w2", ["x"])
    assert put_tags(client, "w2", None)["tags"] == ["web"]  # null: as DELETE
    assert Node.get_by_id("w1").api_tags is None and Node.get_by_id("w2").api_tags is None

    entries = list(AuditLog.select().where(AuditLog.action == "node.tags").order_by(AuditLog.id))
    assert [(e.target, json.loads(e.detail)) for e in entries] == [
        ("w1", {"api_tags": ["appserver", "hpc"], "previous": None}),
        ("w1", {"api_tags": [], "previous": ["appserver", "hpc"]}),
        ("w1", {"api_tags": None, "previous": []}),
        ("w2", {"api_tags": ["x"], "previous": None}),
        ("w2", {"api_tags": None, "previous": ["x"]}),
    ]
    assert {e.actor for e in entries} == {"anonymous@127.0.0.1"}


def test_bad_tags_name_the_field_and_write_nothing(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    join_fleet(client, redis_client)
    put_tags(client, "w1", ["gold"])
    cases: list[tuple[Any, str]] = [
        ({"tags": ["two words"]}, "tags"),
        ({"tags": ["a\u0000b"]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["x" * 65]}, "tags"),
        ({"tags": ["tags:x"]}, "tags"),
        ({"tags": [5]}, "tags"),
        ({"tags": "gold"}, "tags"),
        ({"tags": [f"t{i}" for i in range(65)]}, "tags"),
        ({"tags": {"a": "b"}}, "tags"),
        ({}, "tags"),
        ({"tags": [], "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = client.put("/api/nodes/w1/tags", json=body)
        answered = response.get_json()
        assert response.status_code == 400, (body, answered)
        assert answered["error"].startswith(f"Invalid request format: {field}"), (body, answered)
    assert client.put("/api/nodes/w1/tags", data="{bad json").status_code == 400
    assert client.put("/api/nodes/ghost/tags", json={"tags": ["a"]}).status_code == 404
    assert client.delete("/api/nodes/ghost/tags").status_code == 404
    assert json.loads(Node.get_by_id("w1").api_tags) == ["gold"]
    assert AuditLog.select().where(AuditLog.action == "node.tags").count() == 1


def test_an_older_database_gains_the_api_tags_column(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    db.init_db(path)
    db.database.execute_sql("ALTER TABLE node DROP COLUMN api_tags")
    forget_migration_history()  # made before the migration history
    db.database.execute_sql(
        "INSERT INTO node (id, hostname, ip, facts, labels, api_labels, interval, version, status, "
        "registered_at) VALUES ('n1', 'h', '1.2.3.4', '{}', '{}', '{}', 5, '', 1, '2026-01-01 00:00:00')"
    )
    db.close()
    db.init_db(path)
    try:
        assert "api_tags" in {c.name for c in db.database.get_columns("node")}
        assert Node.get_by_id("n1").api_tags is None
    finally:
        db.close()


def test_a_query_asked_again_follows_every_change_of_tags_labels_facts_and_liveness(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    # Each process keeps the static part of every document and each node's answer to a recent query while the
    # node's row is unchanged (services/nodes/documents.py): the same query, asked again, must still see changes.
    join_fleet(client, redis_client)
    assert found(client, "tags:blue") == []
    put_tags(client, "w2", ["blue"])
    assert found(client, "tags:blue") == ["w2"]
    put_tags(client, "w2", None)
    assert found(client, "tags:blue") == []
    assert found(client, "labels.rack:r7") == []
    answer(client.put("/api/nodes/w1/labels", json={"labels": {"rack": "r7"}}))
    assert found(client, "labels.rack:r7") == ["w1"]
    assert found(client, "os.cpus:>8") == ["d1"]
    join_with(client, "w2", "web-2", "10.0.0.12", cpus=32, memory=4 * GIB, disks=["/"], tags=["web"])  # a rejoin
    assert found(client, "os.cpus:>8") == ["w2", "d1"]
    beat(redis_client, "w2")
    assert found(client, "status:online") == ["w1", "w2"]
    beat(redis_client, "d1")
    assert found(client, "status:online") == ["w1", "w2", "d1"]
    assert found(client, "*") == ["w1", "w2", "d1"]
