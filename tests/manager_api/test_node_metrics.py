"""Node metrics history (services/nodes/metrics_history.py): a sample per online node from its heartbeat,
answered by GET /api/nodes/{id}/metrics oldest first, pruned past the retention, taken by the duties."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api import db
from manager_api.config import Settings
from manager_api.models import NodeMetric, utcnow
from manager_api.services.nodes import metrics_history
from tests.support import wait_until

from .conftest import answer, beat, join, online_node, running_duties


def test_samples_of_online_nodes_are_answered_oldest_first_and_pruned(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1", cpu=12.5, memory=40.0)
    join(client, "n2", "h2", "10.0.0.2")  # never beat: offline, no sample
    with client.application.app_context():
        assert metrics_history.sample(redis_client, settings.offline_after_intervals) == 1
        beat(redis_client, "n1", cpu=80.0, memory=41.0)
        assert metrics_history.sample(redis_client, settings.offline_after_intervals) == 1
        with db.write_transaction():  # one sample from two days ago: past the retention
            NodeMetric.create(node="n1", at=utcnow() - timedelta(days=2), cpu_percent=1.0, memory_percent=1.0)
    body = answer(client.get("/api/nodes/n1/metrics"))
    assert body["cpu_percent"] == [12.5, 80.0] and body["memory_percent"] == [40.0, 41.0]
    assert body["at"][0] <= body["at"][1]
    assert len(answer(client.get("/api/nodes/n1/metrics?hours=72"))["at"]) == 3
    assert answer(client.get("/api/nodes/n2/metrics"))["at"] == []
    with client.application.app_context():
        assert metrics_history.prune(24) == 1
    assert len(answer(client.get("/api/nodes/n1/metrics?hours=72"))["at"]) == 2


def test_bad_hours_and_unknown_nodes_are_refused(client: FlaskClient) -> None:
    join(client, "n1", "h1", "10.0.0.1")
    bad = client.get("/api/nodes/n1/metrics?hours=-1")
    assert bad.status_code == 400 and "hours" in bad.get_json()["error"]
    assert client.get("/api/nodes/n1/metrics?hours=soon").status_code == 400
    missing = client.get("/api/nodes/nope/metrics")
    assert missing.status_code == 404 and missing.get_json() == {"error": "Node not found"}


def test_the_duties_sample_every_interval(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    online_node(client, redis_client, "n1", "10.0.0.1")
    fast = dataclasses.replace(settings, node_metrics_every_seconds=0.2)
    with running_duties(fast):
        wait_until(lambda: len(answer(client.get("/api/nodes/n1/metrics"))["at"]) >= 2, timeout=20)
