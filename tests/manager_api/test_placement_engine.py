"""The one placement engine: host pins, spread instances and both ranking strategies on plain data."""

from __future__ import annotations

from typing import Any

from manager_api.services.placement import filters
from manager_api.services.placement.engine import plan
from manager_api.services.placement.model import Candidate, Demand, Room
from manager_api.services.placement.ranking import BALANCE, LEAST_LOADED, TASK_PENALTY


def node(node_id: str, online: bool = True, **kw: Any) -> Candidate:
    return Candidate(node_id, f"host-{node_id}", online, cpu_cores=4, memory_mb=4096, ip=f"10.0.0.{node_id[-1]}", **kw)


def test_an_app_of_three_spread_instances_takes_two_nodes_and_says_why_not_the_third() -> None:
    result = plan([node("n1"), node("n2"), node("n3", online=False)], [Demand("app", count=3, distinct_nodes=True)])
    assert sorted(p.node_id for p in result.placements) == ["n1", "n2"]
    assert result.rejections == {
        "app": ["host-n1: holds another instance of app", "host-n2: holds another instance of app", "host-n3: offline"]
    }
    assert result.rejection_summary["app"] == {
        "memory": 0, "cpu": 0, "gpu": 0, "labels": 0, "offline": 1, "distinct": 2
    }  # fmt: skip


def test_an_apps_node_query_is_a_filter_and_held_nodes_count_as_holding_an_instance() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    demand = Demand("app", count=2, distinct_nodes=True, only_nodes=frozenset({"n1", "n2"}))
    result = plan(nodes, [demand], held={"n1": ["app"]})
    assert [p.node_id for p in result.placements] == ["n2"]
    assert result.rejections == {
        "app": ["host-n1: holds another instance of app", "host-n2: holds another instance of app",
                "host-n3: does not match the app's nodeQuery"]
    }  # fmt: skip
    assert result.rejection_summary["app"]["query"] == 1


def test_instances_without_a_spread_rule_share_the_emptiest_node_while_it_stays_emptiest() -> None:
    result = plan([node("n1"), node("n2", cpu_reserved=3.0)], [Demand("app", cpu_cores=1, count=2)])
    assert [p.node_id for p in result.placements] == ["n1", "n1"]


def test_a_host_pin_is_a_filter_with_its_own_reason() -> None:
    nodes = [node("n1"), node("n2")]
    assert [p.node_id for p in plan(nodes, [Demand("c", host="HOST-N2")]).placements] == ["n2"]
    refused = plan(nodes, [Demand("c", host="10.0.0.9")])
    assert refused.rejections == {"c": ["host-n1: not 10.0.0.9", "host-n2: not 10.0.0.9"]}


def test_the_two_rankings_disagree_where_their_scores_do() -> None:
    # Balance looks at reservations against capacity; least-loaded at live load and tasks.
    reserved = node("n1", cpu_reserved=3.0, cpu_usage_percent=0.0)
    busy = node("n2", cpu_usage_percent=2 * TASK_PENALTY, active_tasks=1)
    assert [p.node_id for p in plan([reserved, busy], [Demand("c")], BALANCE).placements] == ["n2"]
    assert [p.node_id for p in plan([reserved, busy], [Demand("c", tasks=1)], LEAST_LOADED).placements] == ["n1"]
    assert LEAST_LOADED.score(Room(busy), Demand("c")) == 3 * TASK_PENALTY


def test_the_filters_refuse_in_order_and_narrow_agrees_with_refused_for() -> None:
    rooms = [Room(node("n1", labels={"zone": "a"})), Room(node("n2", gpus=1)), Room(node("n3", online=False))]
    demand = Demand("c", node_labels={"zone": "a"})
    assert [filters.refused_for(room, demand) for room in rooms] == [None, ("labels", 0.0), ("offline", 0.0)]
    online = [room for room in rooms if room.node.online]
    assert [room.node.node_id for room in filters.narrow(online, demand)] == ["n1"]
