"""GET /api/task/node answers from each node's part kept encoded (presenters.nodes.manual_list_body): the same
bytes jsonify writes of the node list built afresh, and every change a node's part is made of shows at once."""

from __future__ import annotations

from datetime import datetime

import redis as redis_lib
from flask import Flask, jsonify
from flask.testing import FlaskClient

from manager_api.api.presenters import nodes as node_presenters
from manager_api.models import Node
from manager_api.services import job_keys
from manager_api.services.nodes import manual_list
from shared import heartbeat, keys
from tests.support import wait_until

from .conftest import answer, beat, join

INTERVALS = 3


def _built_afresh(app: Flask, redis_client: redis_lib.Redis) -> bytes:
    with app.test_request_context():
        listing = manual_list.read(redis_client, INTERVALS)
        return jsonify({"nodes": node_presenters.manual_list_json(listing)}).get_data()


def _listed(client: FlaskClient, app: Flask, redis_client: redis_lib.Redis) -> dict[str, dict]:
    answered = client.get("/api/task/node")
    assert answered.status_code == 200 and answered.mimetype == "application/json"
    assert answered.get_data() == _built_afresh(app, redis_client)
    return {node["id"]: node for node in answered.get_json()["nodes"]}


def test_the_encoded_list_is_the_list_built_afresh_through_every_change(
    client: FlaskClient, app: Flask, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "web-01", "10.0.0.1", facts={"labels": {"zone": "été", "role": "web"}})
    join(client, "n2", "never-beat", "10.0.0.2")
    join(client, "n3", "waiting", "10.0.0.3")
    beat(redis_client, "n1", cpu=12, memory=34)
    figures = {"interval": 5.0, "cpu_usage_percent": 1.0, "memory_usage_percent": 2.0, "taking_jobs": False}
    heartbeat.write(redis_client, "n3", figures, key=job_keys.node_key("n3"))
    Node.update(last_seen=datetime(2026, 12, 1, 8, 0, 0)).where(Node.id == "n2").execute()

    nodes = _listed(client, app, redis_client)
    assert list(nodes) == ["n1", "n2", "n3"]  # join order
    assert nodes["n1"]["labels"] == {"zone": "été", "role": "web"} and nodes["n1"]["ready"] is True
    assert nodes["n1"]["resources"] == "cpu_usage_percent:12,memory_usage_percent:34"
    assert (nodes["n2"]["status"], nodes["n2"]["last_heartbeat"]) == (1, "2026-12-01T08:00:00Z")
    assert (nodes["n3"]["status"], nodes["n3"]["ready"]) == (0, False)

    # A new heartbeat, labels set through the API (the node revision moves), a last_seen the duties wrote (it
    # does not): each shows at the next read.
    beat(redis_client, "n1", cpu=56, memory=78)
    answer(client.put("/api/nodes/n3/labels", json={"labels": {"tier": "gold"}}))
    Node.update(last_seen=datetime(2026, 12, 2, 9, 30, 0)).where(Node.id == "n2").execute()
    nodes = _listed(client, app, redis_client)
    assert nodes["n1"]["resources"] == "cpu_usage_percent:56,memory_usage_percent:78"
    assert nodes["n3"]["labels"] == {"tier": "gold"}
    assert nodes["n2"]["last_heartbeat"] == "2026-12-02T09:30:00Z"

    # Offline by its heartbeat's age: the same row and summary, another liveness.
    beat(redis_client, "n1", cpu=56, memory=78, interval=0.05)
    wait_until(lambda: _listed(client, app, redis_client)["n1"]["status"] == 1, timeout=5, what="n1 offline")
    nodes = _listed(client, app, redis_client)
    assert nodes["n1"]["resources"] == "cpu_usage_percent:0,memory_usage_percent:0"
    assert nodes["n1"]["last_heartbeat"] is not None  # still its heartbeat's time

    # No summary any more: the row's last_seen (none yet).
    redis_client.delete(keys.node_summary("n1"))
    assert _listed(client, app, redis_client)["n1"]["last_heartbeat"] is None

    # Another node joins, one is forgotten: the others' parts are matched by id.
    join(client, "n4", "late", "10.0.0.4")
    beat(redis_client, "n4")
    assert list(_listed(client, app, redis_client)) == ["n1", "n2", "n3", "n4"]
    answer(client.delete("/api/nodes/n2"))
    nodes = _listed(client, app, redis_client)
    assert list(nodes) == ["n1", "n3", "n4"] and nodes["n4"]["status"] == 0
