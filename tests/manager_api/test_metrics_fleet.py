"""The fleet's per-node families of GET /metrics (observability/collectors.py), read in-process: only the nodes
with something waiting get a series, the worst NODE_SERIES_LIMIT of them, and the totals count every node."""

from __future__ import annotations

from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from manager_api.observability import collectors
from shared import api, keys
from tests.manager_api.conftest import online_node

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(client: FlaskClient) -> Samples:
    """Sample name -> its (labels, value), parsed by prometheus_client's own parser."""
    answer = client.get(api.METRICS_PATH)
    assert answer.status_code == 200, answer.text
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by_node(samples: Samples, name: str) -> dict[str, float]:
    return {labels["node"]: value for labels, value in samples.get(name, [])}


def one(samples: Samples, name: str, **labels: str) -> float:
    found = [value for ls, value in samples.get(name, []) if labels.items() <= ls.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def queue_jobs(redis_client: redis_lib.Redis, node_id: str, count: int) -> None:
    """``count`` entries in the node's RQ queue list: LLEN is all the scrape reads of it."""
    redis_client.rpush(
        Queue.redis_queue_namespace_prefix + keys.node_queue(node_id), *[f"job-{i}" for i in range(count)]
    )


def stream_backlog(redis_client: redis_lib.Redis, node_id: str, delivered: int, undelivered: int) -> None:
    """A reports stream whose manager group has ``delivered`` reports pending and ``undelivered`` not yet read."""
    stream = keys.node_reports(node_id)
    redis_client.xgroup_create(stream, keys.EVENTS_GROUP, id="$", mkstream=True)
    for i in range(delivered + undelivered):
        redis_client.xadd(stream, {"kind": "event", "n": str(i)})
    if delivered:
        redis_client.xreadgroup(keys.EVENTS_GROUP, "duties", {stream: ">"}, count=delivered)


def test_only_nodes_with_a_backlog_have_series_and_totals_count_all(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    for i, node_id in enumerate(("n1", "n2", "n3", "n4")):
        online_node(client, redis_client, node_id, f"10.0.0.{i + 1}")
    queue_jobs(redis_client, "n1", 3)
    queue_jobs(redis_client, "n2", 1)
    stream_backlog(redis_client, "n2", delivered=2, undelivered=5)
    stream_backlog(redis_client, "n3", delivered=0, undelivered=0)  # a stream the manager is up to date with
    samples = scrape(client)

    assert one(samples, "corral_nodes", status="online") == 4
    assert by_node(samples, "corral_node_queue_length") == {"n1": 3, "n2": 1}  # n3 and n4: empty, no series
    assert [labels["node"] for labels, _v in samples["corral_node_queue_length"]] == ["n1", "n2"]  # longest first
    assert one(samples, "corral_node_queue_jobs") == 4
    assert one(samples, "corral_nodes_with_queued_jobs") == 2
    assert by_node(samples, "corral_report_stream_pending") == {"n2": 2}
    lag = by_node(samples, "corral_report_stream_lag")
    if redis_client.info("server")["redis_version"] >= "7":  # XINFO GROUPS answers a lag from Redis 7
        assert lag == {"n2": 5}
        assert one(samples, "corral_report_streams_backlog", state="lag") == 5
    assert one(samples, "corral_report_streams_backlog", state="pending") == 2
    assert one(samples, "corral_report_streams_behind") == 1
    assert one(samples, "corral_node_series_omitted", family="corral_node_queue_length") == 0
    assert "corral_scrape_errors" not in samples


def test_per_node_families_keep_the_worst_nodes_up_to_the_limit(
    client: FlaskClient, redis_client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collectors, "NODE_SERIES_LIMIT", 2)
    monkeypatch.setattr(collectors, "NODE_CHUNK", 2)  # several script runs, answered in the nodes' order
    lengths = {"n1": 1, "n2": 7, "n3": 2, "n4": 5, "n5": 0}
    for i, (node_id, length) in enumerate(lengths.items()):
        online_node(client, redis_client, node_id, f"10.0.0.{i + 1}")
        if length:
            queue_jobs(redis_client, node_id, length)
    samples = scrape(client)

    assert by_node(samples, "corral_node_queue_length") == {"n2": 7, "n4": 5}
    assert one(samples, "corral_node_series_omitted", family="corral_node_queue_length") == 2  # n1 and n3
    assert one(samples, "corral_node_queue_jobs") == 15  # every node counted, shown or not
    assert one(samples, "corral_nodes_with_queued_jobs") == 4


def test_backlogs_are_read_in_the_nodes_order(redis_client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collectors, "NODE_CHUNK", 2)
    queue_jobs(redis_client, "b", 2)
    stream_backlog(redis_client, "c", delivered=1, undelivered=0)
    redis_client.xadd(keys.node_reports("d"), {"kind": "event"})  # a stream without the manager's group
    backlogs: list[Any] = collectors.read_backlogs(redis_client, ["a", "b", "c", "d", "e"])
    assert [(b.queue, b.pending) for b in backlogs] == [(0, None), (2, None), (0, 1), (0, None), (0, None)]
    assert collectors.read_backlogs(redis_client, []) == []
