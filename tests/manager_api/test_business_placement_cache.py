"""load_nodes()'s per-process cache of nodes: reused while a node's inputs are unchanged, never stale.

Each placement reads facts, labels, reservations and heartbeats afresh and rebuilds only what changed;
these tests change one input at a time (through the API, a second process, Redis) and check that the
next placement sees it, on a real SQLite file and a real Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api.config import Settings
from manager_api.models import Business, BusinessComponent, Node
from manager_api.services.placement import candidates as business_placement
from manager_api.services.placement.candidates import load_nodes
from manager_api.services.placement.engine import plan
from manager_api.services.placement.model import Candidate, Demand
from shared import keys

from .conftest import beat, join

FACTS = {"cpu_count": 8, "memory_total_mb": 8192, "labels": {"zone": "a"}}


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    """Each test starts as a fresh manager process does (the cache lives as long as the process)."""
    business_placement.forget()
    yield
    business_placement.forget()


def _node(redis_client: redis_lib.Redis, node_id: str = "n1") -> Candidate:
    return {n.node_id: n for n in load_nodes(redis_client, 3)}[node_id]


def test_nothing_changed_is_the_same_entry_and_a_new_heartbeat_keeps_the_parsed_facts(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1", cpu=10)
    first = _node(redis_client)
    assert _node(redis_client) is first  # nothing new: reused as is
    beat(redis_client, "n1", cpu=55)
    again = _node(redis_client)
    assert again is not first and again.cpu_usage_percent == 55.0
    assert again.labels is first.labels  # facts and labels unchanged: not parsed again
    assert again._replace(cpu_usage_percent=10.0) == first


@pytest.mark.parametrize("new_heartbeat", [False, True])
def test_labels_set_through_the_api_are_seen_by_the_next_placement(
    client: FlaskClient, redis_client: redis_lib.Redis, new_heartbeat: bool
) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1")
    wanted = [Demand("c", node_labels={"zone": "b"})]
    assert plan(load_nodes(redis_client, 3), wanted).rejections == {"c": ["h1: label zone=b missing (has zone=a)"]}
    assert client.put("/api/nodes/n1/labels", json={"labels": {"zone": "b"}}).status_code == 200
    if new_heartbeat:
        beat(redis_client, "n1")
    assert dict(_node(redis_client).labels) == {"zone": "b"}
    assert plan(load_nodes(redis_client, 3), wanted).ok


def test_labels_set_by_another_manager_process_are_seen(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    """Another gunicorn worker shares only the database: nothing in this process is told of its change."""
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1")
    assert dict(_node(redis_client).labels) == {"zone": "a"}
    other_worker = (
        "import sys; from manager_api import db; from manager_api.services.nodes import inventory as node_inventory; "
        "db.init_db(sys.argv[1]); node_inventory.set_api_labels('n1', {'zone': 'c', 'disk': 'ssd'}, 'other'); "
        "db.close()"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", other_worker, settings.db_path], cwd=root, check=True, timeout=60)
    assert dict(_node(redis_client).labels) == {"zone": "c", "disk": "ssd"}


@pytest.mark.parametrize("new_heartbeat", [False, True])
def test_a_rejoin_with_new_facts_or_hostname_is_seen(
    client: FlaskClient, redis_client: redis_lib.Redis, new_heartbeat: bool
) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1")
    assert (_node(redis_client).cpu_cores, _node(redis_client).hostname) == (8.0, "h1")
    join(client, "n1", "h1-renamed", "10.0.0.1", facts={**FACTS, "cpu_count": 32, "gpu_count": 1})
    if new_heartbeat:
        beat(redis_client, "n1")
    node = _node(redis_client)
    assert (node.cpu_cores, node.gpus, node.hostname, dict(node.labels)) == (32.0, 1, "h1-renamed", {"zone": "a"})


def test_a_reservation_made_elsewhere_is_seen(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1")
    assert _node(redis_client).cpu_reserved == 0.0
    business = Business.create(business_id="b1", business_name="b1", spec="{}")
    BusinessComponent.create(
        business=business,
        component_id="c",
        component_name="c",
        type="process",
        node="n1",
        cpu_cores=3,
        status="running",
    )
    assert (_node(redis_client).cpu_reserved, _node(redis_client).online) == (3.0, True)
    BusinessComponent.update(status="stopped").execute()
    assert _node(redis_client).cpu_reserved == 0.0


def test_offline_follows_the_setting_and_a_missing_heartbeat(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    assert not _node(redis_client).online  # never heard from
    beat(redis_client, "n1")
    assert _node(redis_client).online
    # The same heartbeat read with a stricter setting: offline at once, online again with the old one.
    assert not load_nodes(redis_client, 0)[0].online
    assert load_nodes(redis_client, 3)[0].online


def test_a_deleted_node_is_dropped_from_the_cache(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    for i in (1, 2):
        join(client, f"n{i}", f"h{i}", f"10.0.0.{i}", facts=FACTS)
        beat(redis_client, f"n{i}")
    assert [n.node_id for n in load_nodes(redis_client, 3)] == ["n1", "n2"]
    Node.delete().where(Node.id == "n2").execute()
    assert [n.node_id for n in load_nodes(redis_client, 3)] == ["n1"]
    assert set(business_placement._built) == {"n1"}


def test_garbage_labels_and_heartbeat_are_a_node_without_labels_offline(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts=FACTS)
    beat(redis_client, "n1", cpu=20)
    assert _node(redis_client).online
    Node.update(labels=json.dumps(["not", "a", "dict"])).execute()
    assert dict(_node(redis_client).labels) == {}
    redis_client.set(keys.node_summary("n1"), "not a summary")
    node = _node(redis_client)
    assert (node.online, node.cpu_usage_percent, node.cpu_cores) == (False, 0.0, 8.0)
