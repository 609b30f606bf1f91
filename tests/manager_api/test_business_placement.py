"""The business scheduler: plan() on plain data, load_nodes() on a real database and a real Redis."""

from __future__ import annotations

import json
from typing import Any

import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api.models import Business, BusinessComponent, Node
from manager_api.services.placement.candidates import capacity_from_facts, load_nodes
from manager_api.services.placement.engine import plan
from manager_api.services.placement.model import Candidate, Demand
from manager_api.services.placement.refusals import MAX_NODE_REASONS, NO_NODES
from tests.support import wait_until

from .conftest import beat, join


def node(node_id: str, cpu: float = 8, memory: int = 8192, gpus: int = 0, **kw: Any) -> Candidate:
    return Candidate(
        node_id=node_id,
        hostname=kw.pop("hostname", node_id),
        online=kw.pop("online", True),
        labels=kw.pop("labels", {}),
        cpu_cores=cpu,
        memory_mb=memory,
        gpus=gpus,
        **kw,
    )


def where(result: Any) -> dict[str, str]:
    return {p.component_id: p.node_id for p in result.placements}


# --- plan(): filters and the reasons they give ---


def test_every_filter_gives_its_reason_per_node_nearest_to_fitting_first() -> None:
    nodes = [
        node("n-off", online=False),
        node("n-zone", labels={"zone": "eu"}),
        node("n-nogpu", labels={"zone": "us"}),
        node("n-gpu-full", labels={"zone": "us"}, gpus=1, gpus_reserved=1),
        node("n-cpu", labels={"zone": "us"}, gpus=2, cpu=4, cpu_reserved=3.5),
        node("n-mem", labels={"zone": "us"}, gpus=2, memory=2048, memory_reserved=1536),
    ]
    demand = Demand("c1", cpu_cores=1, memory_mb=1024, gpu=True, require_gpu=True, node_labels={"zone": "us"})
    result = plan(nodes, [demand])
    assert not result.ok and result.placements == []
    assert result.rejections == {
        "c1": [
            "n-mem: memory 512 MB free < 1024 MB",
            "n-cpu: cpu 0.5 cores free < 1 cores",
            "n-gpu-full: no free GPU (1 of 1 reserved)",
            "n-nogpu: no GPU",
            "n-zone: label zone=us missing (has zone=eu)",
            "n-off: offline",
        ]
    }
    assert result.rejection_summary == {"c1": {"memory": 1, "cpu": 1, "gpu": 2, "labels": 1, "offline": 1}}


def test_a_missing_label_and_no_nodes_at_all() -> None:
    result = plan([node("a")], [Demand("c", node_labels={"zone": "us-east"})])
    assert result.rejections == {"c": ["a: label zone=us-east missing"]}
    nothing = plan([], [Demand("c")])
    assert nothing.rejections == {"c": [NO_NODES]}
    assert nothing.refusal_text() == f"no node fits component c: {NO_NODES}"


def test_a_refusal_over_a_thousand_nodes_names_twenty_and_counts_them_all() -> None:
    # 50 offline, 300 in the wrong zone, 600 short of memory (by 1..600 MB), 50 short of CPU.
    nodes = [node(f"off-{i:03}", online=False) for i in range(50)]
    nodes += [node(f"eu-{i:03}", labels={"zone": "eu"}) for i in range(300)]
    nodes += [node(f"mem-{i:03}", labels={"zone": "us"}, memory=4096, memory_reserved=i) for i in range(600, 0, -1)]
    nodes += [node(f"cpu-{i:03}", labels={"zone": "us"}, cpu=2) for i in range(50)]
    demands = [
        Demand("web", cpu_cores=4, memory_mb=4096, node_labels={"zone": "us"}),
        Demand("tiny", memory_mb=1),
    ]
    result = plan(nodes, demands)
    assert list(where(result)) == ["tiny"] and list(result.rejections) == ["web"]
    reasons = result.rejections["web"]
    assert len(reasons) == MAX_NODE_REASONS + 1 == 21
    # A node that fails on a resource tells more than one in the wrong zone or offline: those come first,
    # memory (the last filter) before CPU, and among them the nearest to fitting first.
    assert reasons[:20] == [f"mem-{i:03}: memory {4096 - i} MB free < 4096 MB" for i in range(1, 21)]
    assert reasons[-1] == "… and 980 more nodes"
    assert result.rejection_summary == {"web": {"memory": 600, "cpu": 50, "gpu": 0, "labels": 300, "offline": 50}}
    assert result.refusal_text() == (
        "no node fits component web: memory on 600 nodes, labels on 300, cpu on 50, offline on 50"
    )


def test_require_gpu_alone_needs_gpus_but_not_a_free_one() -> None:
    nodes = [node("cpu-only"), node("gpu-busy", gpus=1, gpus_reserved=1)]
    result = plan(nodes, [Demand("c", require_gpu=True)])
    assert result.ok and where(result) == {"c": "gpu-busy"}


def test_exact_fit_is_accepted_including_fractional_cores() -> None:
    result = plan([node("a", cpu=0.3, memory=100)], [Demand("x", 0.1, 50), Demand("y", 0.2, 50)])
    assert result.ok and where(result) == {"x": "a", "y": "a"}


# --- plan(): choosing among nodes that fit ---


def test_picks_the_node_whose_busiest_resource_stays_lowest() -> None:
    nodes = [
        node("busy-cpu", cpu=8, cpu_reserved=6),  # after: cpu 7/8
        node("busy-mem", memory=8192, memory_reserved=6144),  # after: memory 7168/8192
        node("roomy", cpu=8, memory=8192, cpu_reserved=2, memory_reserved=2048),  # after: 3/8, 3072/8192
    ]
    result = plan(nodes, [Demand("c", cpu_cores=1, memory_mb=1024)])
    assert where(result) == {"c": "roomy"}
    assert result.placements[0].score == 0.375 and result.placements[0].hostname == "roomy"


def test_ties_go_to_lower_live_cpu_then_node_id() -> None:
    nodes = [node("b", cpu_usage_percent=50), node("c", cpu_usage_percent=10), node("a", cpu_usage_percent=10)]
    assert where(plan(nodes, [Demand("x", 1, 1024)])) == {"x": "a"}
    assert where(plan(nodes[:2], [Demand("x", 1, 1024)])) == {"x": "c"}


def test_components_of_one_plan_count_against_each_other() -> None:
    # Two equal nodes: ten equal components alternate instead of piling onto the first.
    nodes = [node("a", cpu=10, memory=10240), node("b", cpu=10, memory=10240)]
    demands = [Demand(f"c{i}", cpu_cores=1, memory_mb=512) for i in range(10)]
    placed = where(plan(nodes, demands))
    assert sorted(placed.values()).count("a") == 5 and sorted(placed.values()).count("b") == 5
    # Capacity runs out: the third 4-core component fits nowhere and says so, with the plan's own use counted.
    result = plan([node("a", cpu=4), node("b", cpu=4)], [Demand(f"c{i}", cpu_cores=4) for i in range(3)])
    assert where(result) == {"c0": "a", "c1": "b"}
    assert result.rejections == {"c2": ["a: cpu 0 cores free < 4 cores", "b: cpu 0 cores free < 4 cores"]}


def test_gpus_are_counted_one_per_component() -> None:
    nodes = [node("g", gpus=2)]
    result = plan(nodes, [Demand("x", gpu=True), Demand("y", gpu=True), Demand("z", gpu=True)])
    assert where(result) == {"x": "g", "y": "g"}
    assert result.rejections == {"z": ["g: no free GPU (2 of 2 reserved)"]}


def test_a_rejected_component_takes_nothing_and_later_ones_are_still_planned() -> None:
    result = plan([node("a", cpu=2)], [Demand("big", cpu_cores=3, memory_mb=10), Demand("small", cpu_cores=2)])
    assert where(result) == {"small": "a"} and list(result.rejections) == ["big"]


def test_prefer_node_keeps_a_component_where_it_runs_while_it_fits() -> None:
    nodes = [node("empty"), node("home", cpu_reserved=6)]
    assert where(plan(nodes, [Demand("c", cpu_cores=1, prefer_node="home")])) == {"c": "home"}
    # It no longer fits there (or the node went away, or offline): placed elsewhere like any other.
    assert where(plan(nodes, [Demand("c", cpu_cores=3, prefer_node="home")])) == {"c": "empty"}
    assert where(plan(nodes, [Demand("c", prefer_node="gone")])) == {"c": "empty"}
    offline_home = [node("empty"), node("home", online=False)]
    assert where(plan(offline_home, [Demand("c", prefer_node="home")])) == {"c": "empty"}


def test_nodes_without_known_capacity_take_only_components_that_ask_nothing() -> None:
    nodes = [node("bare", cpu=0, memory=0)]
    assert plan(nodes, [Demand("free")]).ok
    assert plan(nodes, [Demand("needy", memory_mb=1)]).rejections == {"needy": ["bare: memory 0 MB free < 1 MB"]}


def test_capacity_from_facts() -> None:
    assert capacity_from_facts({"cpu_count": 4, "memory_total_mb": 2048, "gpu_count": 1}) == (4.0, 2048, 1)
    assert capacity_from_facts({"cpu_count": 2.5, "gpus": [{"index": 0}, {"index": 1}]}) == (2.5, 0, 2)
    assert capacity_from_facts({"cpu_count": "many", "memory_total_mb": -5}) == (0.0, 0, 0)


# --- load_nodes(): the database and Redis behind plan() ---


def _business(business_id: str) -> Business:
    return Business.create(business_id=business_id, business_name=business_id, spec="{}")


def _component(business: Business, component_id: str, node_id: str, **kw: Any) -> None:
    BusinessComponent.create(
        business=business, component_id=component_id, component_name=component_id, type="process", node=node_id, **kw
    )


def test_load_nodes_reads_facts_labels_reservations_and_liveness(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    facts = {"cpu_count": 8, "memory_total_mb": 16384, "gpu_count": 2, "labels": {"zone": "a", "role": "db"}}
    join(client, "n1", "h1", "10.0.0.1", facts=facts)
    join(client, "n2", "h2", "10.0.0.2", facts={"cpu_count": 2, "memory_total_mb": 1024})
    beat(redis_client, "n1", cpu=37)
    # The API's label wins over the agent's on the same key; the scheduler sees the effective set.
    assert client.put("/api/nodes/n1/labels", json={"labels": {"zone": "b", "gpu": "a100"}}).status_code == 200

    one, two = _business("b1"), _business("b2")
    _component(one, "web", "n1", cpu_cores=1.5, memory_mb=1000, gpus=1, status="running")
    _component(one, "db", "n1", cpu_cores=2, memory_mb=2000, status="starting")
    _component(one, "gone", "n1", cpu_cores=4, memory_mb=4000, status="failed")  # holds nothing
    _component(one, "old", "n1", cpu_cores=4, memory_mb=4000, status="stopped")  # holds nothing
    # Removed by an update, still stopping: it holds its node until the stop is confirmed.
    _component(one, "dropped", "n1", cpu_cores=1, memory_mb=1000, status="stopping", desired="removed")
    _component(two, "api", "n1", cpu_cores=0.5, memory_mb=24, status="pending")
    _component(two, "api2", "n2", cpu_cores=1, memory_mb=512, status="running")

    by_id = {n.node_id: n for n in load_nodes(redis_client, 3)}
    n1, n2 = by_id["n1"], by_id["n2"]
    assert (n1.online, n2.online, n1.hostname) == (True, False, "h1")
    assert dict(n1.labels) == {"zone": "b", "role": "db", "gpu": "a100"}
    assert (n1.cpu_cores, n1.memory_mb, n1.gpus, n1.cpu_usage_percent) == (8.0, 16384, 2, 37.0)
    assert (n1.cpu_reserved, n1.memory_reserved, n1.gpus_reserved) == (5.0, 4024, 1)
    assert (n2.cpu_reserved, n2.memory_reserved) == (1.0, 512)

    # A business being replaced gives its reservations back to its own re-plan.
    by_id = {n.node_id: n for n in load_nodes(redis_client, 3, exclude_business_id="b1")}
    assert (by_id["n1"].cpu_reserved, by_id["n1"].memory_reserved, by_id["n1"].gpus_reserved) == (0.5, 24, 0)

    # And end to end: only n1 is online, and a request bigger than what is left there is refused.
    result = plan(load_nodes(redis_client, 3), [Demand("x", cpu_cores=3), Demand("y", cpu_cores=4.5)])
    assert where(result) == {"x": "n1"}
    assert result.rejections == {"y": ["h1: cpu 0 cores free < 4.5 cores", "h2: offline"]}


def test_load_nodes_follows_a_rejoin_with_new_facts(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    join(client, "n1", "h1", "10.0.0.1", facts={"cpu_count": 2, "memory_total_mb": 1024})
    beat(redis_client, "n1")
    assert load_nodes(redis_client, 3)[0].cpu_cores == 2.0
    # The agent restarted with --cpu-cores 16: it sends that figure as cpu_count.
    join(client, "n1", "h1", "10.0.0.1", facts={"cpu_count": 16, "memory_total_mb": 1024})
    assert load_nodes(redis_client, 3)[0].cpu_cores == 16.0
    # Garbage in the stored facts is a node with no capacity, never a crash.
    Node.update(facts="not json").execute()
    assert load_nodes(redis_client, 3)[0].cpu_cores == 0.0
    Node.update(facts=json.dumps([1, 2])).execute()
    assert load_nodes(redis_client, 3)[0].memory_mb == 0


def test_load_nodes_sees_a_node_go_offline_with_nothing_else_changed(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "h1", "10.0.0.1", interval=0.1, facts={"cpu_count": 2, "memory_total_mb": 1024})
    beat(redis_client, "n1", interval=0.1)
    assert load_nodes(redis_client, 3)[0].online
    # The same heartbeat, only older: the node reads offline (3 intervals of 0.1 s), then online at the next.
    wait_until(lambda: not load_nodes(redis_client, 3)[0].online, timeout=5, what="n1 offline")
    assert plan(load_nodes(redis_client, 3), [Demand("c")]).rejections == {"c": ["h1: offline"]}
    beat(redis_client, "n1", interval=0.1)
    assert load_nodes(redis_client, 3)[0].online
