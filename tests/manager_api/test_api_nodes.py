"""Nodes and the join call: live status from heartbeats, the manual's node JSON, join tokens."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.app import close_app, create_app
from manager_api.config import Settings
from manager_api.models import AuditLog, Node
from manager_api.services import job_keys
from manager_api.services.nodes import join as agents
from manager_api.services.nodes import redis_users
from shared import heartbeat, keys
from shared.api import JOIN_PATH, bearer
from shared.defaults import PROTOCOL_VERSION
from tests.support import wait_until

from .conftest import JOIN_TOKEN, beat, join

SECRET = "a-node-secret-long-enough"
BODY = {
    "node_id": "n1",
    "hostname": "h",
    "ip": "1.2.3.4",
    "interval": 5,
    "protocol": PROTOCOL_VERSION,
    "node_secret": SECRET,
}
"""A join body as an agent sends it."""


def test_join_upserts_node_and_answers_queue(client: FlaskClient, redis_url: str) -> None:
    answer = join(client, "a" * 32, "web-01", "10.0.0.5", interval=2)
    job_key = answer.pop("job_key")
    # The node's own Redis user (services.redis_users), on the Redis the manager was given.
    own_url = redis_url.replace("redis://", f"redis://{redis_users.auth('a' * 32)}@")
    assert answer == {
        "node_id": "a" * 32,
        "redis_url": own_url,
        "queue": keys.node_queue("a" * 32),
        "protocol": PROTOCOL_VERSION,
    }
    assert len(bytes.fromhex(job_key)) == 32
    as_node = redis_lib.Redis.from_url(own_url)
    assert as_node.set(keys.node_summary("a" * 32), "x") and as_node.get(keys.node_summary("a" * 32)) == b"x"
    with pytest.raises(redis_lib.exceptions.NoPermissionError):
        as_node.get(keys.node_summary("b" * 32))  # another node's (tests/faults/test_node_redis_acl.py: all)
    as_node.close()
    join(client, "a" * 32, "web-01-renamed", "10.0.0.6")
    node = Node.get_by_id("a" * 32)
    assert (node.hostname, node.ip, Node.select().count()) == ("web-01-renamed", "10.0.0.6", 1)
    assert AuditLog.select().where(AuditLog.action == "node.join").count() == 2


def test_an_external_redis_that_refuses_acl_setuser_gets_the_managers_url_and_one_warning(
    settings: Settings, redis_client: redis_lib.Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agents, "_acl_refused", False)
    redis_client.execute_command("ACL", "SETUSER", "limited", "reset", "on", ">pw", "~*", "&*", "+@all", "-@admin")
    port = redis_client.connection_pool.connection_kwargs["port"]
    limited = replace(settings, redis_url=f"redis://limited:pw@127.0.0.1:{port}/0")
    app = create_app(limited)
    client = app.test_client()
    for node_id in ("n1", "n2"):
        answer = client.post(JOIN_PATH, json={**BODY, "node_id": node_id}, headers=bearer(JOIN_TOKEN))
        assert answer.status_code == 200 and answer.get_json()["redis_url"] == limited.redis_url
    assert sum("refused to make node users" in r.getMessage() for r in caplog.records) == 1
    close_app(app)


def test_join_needs_the_join_token(client: FlaskClient) -> None:
    body = dict(BODY)
    for headers in ({}, bearer("wrong"), bearer("")):
        response = client.post(JOIN_PATH, json=body, headers=headers)
        assert response.status_code == 401 and "error" in response.get_json()
    assert Node.select().count() == 0


def test_join_token_is_not_the_api_token(settings: Settings) -> None:
    app = create_app(replace(settings, api_token="api-token"))
    client = app.test_client()
    body = dict(BODY)
    assert client.post(JOIN_PATH, json=body, headers=bearer("api-token")).status_code == 401
    assert client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN)).status_code == 200
    close_app(app)


def test_join_bad_bodies(client: FlaskClient) -> None:
    good = dict(BODY)
    for broken in (
        {**good, "node_id": ""},
        {**good, "interval": "fast"},
        {k: v for k, v in good.items() if k != "ip"},
        {k: v for k, v in good.items() if k != "node_secret"},
        {**good, "node_secret": "short"},
    ):
        response = client.post(JOIN_PATH, data=json.dumps(broken), headers=bearer(JOIN_TOKEN))
        assert response.status_code == 400, broken
    wrong_protocol = client.post(JOIN_PATH, json={**good, "protocol": 99}, headers=bearer(JOIN_TOKEN))
    assert wrong_protocol.status_code == 400 and "protocol" in wrong_protocol.get_json()["error"]
    assert Node.select().count() == 0


def test_private_redis_url_uses_the_host_the_agent_called(settings: Settings) -> None:
    app = create_app(replace(settings, redis_url=settings.redis_url, private_redis=True))
    client = app.test_client()
    body = dict(BODY)
    response = client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN), base_url="http://192.168.7.7:8080")
    port = redis_lib.Redis.from_url(settings.redis_url or "").connection_pool.connection_kwargs["port"]
    with app.app_context():
        auth = redis_users.auth("n1")
    assert response.get_json()["redis_url"] == f"redis://{auth}@192.168.7.7:{port}/0"
    close_app(app)


def test_node_list_matches_the_manual(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    assert client.get("/api/task/node").get_json() == {"nodes": []}
    join(client, "n1", "web-01", "192.168.1.100")
    join(client, "n2", "web-02", "192.168.1.101")
    beat(redis_client, "n1", cpu=49.6, memory=30.2)
    nodes = client.get("/api/task/node").get_json()["nodes"]
    assert [n["ip"] for n in nodes] == ["192.168.1.100", "192.168.1.101"]
    first, second = nodes
    assert list(first)[:3] == ["ip", "status", "resources"]
    assert (first["status"], first["resources"]) == (0, "cpu_usage_percent:50,memory_usage_percent:30")
    assert (first["id"], first["hostname"]) == ("n1", "web-01")
    assert first["last_heartbeat"].endswith("Z")
    assert (second["status"], second["resources"]) == (1, "cpu_usage_percent:0,memory_usage_percent:0")
    assert second["last_heartbeat"] is None


def test_node_goes_offline_when_heartbeats_stop(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    join(client, "n1", "web-01", "10.0.0.1", interval=0.2)
    beat(redis_client, "n1", cpu=70, memory=60, interval=0.2)
    assert client.get("/api/task/node").get_json()["nodes"][0]["status"] == 0

    def offline() -> bool:
        node = client.get("/api/task/node").get_json()["nodes"][0]
        return node["status"] == 1 and node["resources"] == "cpu_usage_percent:0,memory_usage_percent:0"

    wait_until(offline, timeout=5, what="node n1 offline")
    beat(redis_client, "n1", cpu=70, memory=60, interval=0.2)
    assert client.get("/api/task/node").get_json()["nodes"][0]["status"] == 0


def test_node_list_with_1000_nodes_reads_each_one_right(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    # Speed is bench/bench_core.py's business; this checks the one-round-trip read matches every row.
    rows = [{"id": f"node{i:04d}", "hostname": f"h{i}", "ip": f"10.1.{i // 250}.{i % 250}"} for i in range(1000)]
    Node.insert_many(rows).execute()
    for i in range(0, 1000, 2):
        beat(redis_client, f"node{i:04d}", cpu=i % 100, memory=50)
    nodes = client.get("/api/task/node").get_json()["nodes"]
    assert len(nodes) == 1000 and sum(n["status"] == 0 for n in nodes) == 500
    by_id = {n["id"]: n for n in nodes}
    assert by_id["node0042"]["resources"] == "cpu_usage_percent:42,memory_usage_percent:50"
    assert by_id["node0043"]["resources"] == "cpu_usage_percent:0,memory_usage_percent:0"
    assert by_id["node0043"]["last_heartbeat"] is None


def test_healthz(client: FlaskClient, tmp_path: Path) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_a_node_id_is_bound_to_the_secret_of_its_first_join(client: FlaskClient) -> None:
    """Nobody holding only the join token can take a registered node's place (and its job key)."""
    body = BODY
    first = client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN))
    assert first.status_code == 200
    again = client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN))
    assert again.status_code == 200 and again.get_json()["job_key"] == first.get_json()["job_key"]

    impostor = client.post(
        JOIN_PATH, json={**body, "ip": "6.6.6.6", "node_secret": "not-the-node-secret"}, headers=bearer(JOIN_TOKEN)
    )
    assert impostor.status_code == 403
    assert impostor.get_json()["error"].startswith("node_secret: node n1 is registered with another secret")
    assert "job_key" not in impostor.get_json()
    assert Node.get_by_id("n1").ip == "1.2.3.4"
    refused = AuditLog.get(AuditLog.action == "node.join_refused")
    assert refused.target == "n1" and "6.6.6.6" in refused.detail

    other = client.post(JOIN_PATH, json={**body, "node_id": "n2"}, headers=bearer(JOIN_TOKEN))
    assert other.get_json()["job_key"] != first.get_json()["job_key"]  # one key per node


def test_forgetting_a_node_secret_lets_the_next_join_set_a_new_one(client: FlaskClient) -> None:
    """For an agent that kept its node id but lost its secret: an operator re-admits it, audited."""
    assert client.post(JOIN_PATH, json=BODY, headers=bearer(JOIN_TOKEN)).status_code == 200
    restored = {**BODY, "node_secret": "a-new-secret-after-a-restore"}
    assert client.post(JOIN_PATH, json=restored, headers=bearer(JOIN_TOKEN)).status_code == 403

    forgot = client.post("/api/nodes/n1/forget-secret")
    assert forgot.status_code == 200 and forgot.get_json()["node_id"] == "n1"
    assert AuditLog.get(AuditLog.action == "node.secret_forgotten").target == "n1"
    assert client.post(JOIN_PATH, json=restored, headers=bearer(JOIN_TOKEN)).status_code == 200
    # The new secret is the one bound now; the old one is refused.
    assert client.post(JOIN_PATH, json=BODY, headers=bearer(JOIN_TOKEN)).status_code == 403

    unknown = client.post("/api/nodes/nope/forget-secret")
    assert unknown.status_code == 404 and unknown.get_json() == {"error": "Node not found"}


def test_a_heartbeat_not_signed_by_its_node_does_not_make_it_online(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "web-01", "10.0.0.1")
    join(client, "n2", "web-02", "10.0.0.2")

    def status() -> int:
        [n1] = [n for n in client.get("/api/task/node").get_json()["nodes"] if n["id"] == "n1"]
        return int(n1["status"])

    heartbeat.write(redis_client, "n1", {"interval": 5})  # unsigned
    assert status() == 1
    heartbeat.write(redis_client, "n1", {"interval": 5}, key=job_keys.node_key("n2"))  # n2 speaking for n1
    assert status() == 1
    beat(redis_client, "n1")  # as n1's agent writes it
    assert status() == 0
