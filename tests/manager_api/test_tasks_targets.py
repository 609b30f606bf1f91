"""Target resolution of fleet tasks: a pure function, tested without Redis or a database."""

from __future__ import annotations

from manager_api.services.fleet_tasks.targets import (
    NO_MATCH,
    NO_ONLINE_NODE,
    NODE_OFFLINE,
    HostPlan,
    resolve,
)
from manager_api.services.placement.model import Candidate


def target_node(node_id: str, hostname: str, ip: str, online: bool, labels: dict[str, str]) -> Candidate:
    """A node as target resolution sees it."""
    return Candidate(node_id, hostname, online, labels=labels, ip=ip)


NODES = [
    target_node("id-a", "web-01", "10.0.0.1", True, {"role": "web", "dc": "east"}),
    target_node("id-b", "web-02", "10.0.0.2", True, {"role": "web", "dc": "west"}),
    target_node("id-c", "db-01", "10.0.0.3", False, {"role": "db"}),
    target_node("id-d", "db-02", "10.0.0.4", True, {"role": "db"}),
]


def ran(plans: list[HostPlan]) -> list[str | None]:
    return [p.node_id for p in plans if p.error is None]


def test_ids_hostnames_and_ips_each_select_their_node() -> None:
    plans = resolve(["id-a", "WEB-02", "10.0.0.4"], NODES)
    assert ran(plans) == ["id-a", "id-b", "id-d"]
    assert [p.target for p in plans] == ["id-a", "WEB-02", "10.0.0.4"]
    assert plans[1].hostname == "web-02" and plans[1].ip == "10.0.0.2"


def test_label_selects_every_node_with_it_and_reports_the_offline_one() -> None:
    plans = resolve(["role=db"], NODES)
    assert [(p.node_id, p.error) for p in plans] == [("id-c", NODE_OFFLINE), ("id-d", None)]
    assert ran(resolve(["dc=west"], NODES)) == ["id-b"]


def test_star_is_every_online_node() -> None:
    assert ran(resolve(["*"], NODES)) == ["id-a", "id-b", "id-d"]
    assert all(p.error is None for p in resolve(["*"], NODES))


def test_unknown_target_is_a_failed_row_without_node_and_blocks_nothing() -> None:
    plans = resolve(["nope", "id-a", "role=cache"], NODES)
    assert [(p.target, p.node_id, p.error) for p in plans] == [
        ("nope", None, NO_MATCH),
        ("id-a", "id-a", None),
        ("role=cache", None, NO_MATCH),
    ]


def test_offline_node_named_directly_is_reported_offline() -> None:
    (plan,) = resolve(["db-01"], NODES)
    assert (plan.node_id, plan.error) == ("id-c", NODE_OFFLINE)


def test_a_node_matched_by_several_targets_runs_once() -> None:
    plans = resolve(["web-01", "10.0.0.1", "role=web", "*", "id-a", " web-01 "], NODES)
    assert ran(plans) == ["id-a", "id-b", "id-d"]
    assert plans[0].target == "web-01"
    assert len([p for p in plans if p.node_id == "id-a"]) == 1


def test_star_with_no_online_node_is_reported() -> None:
    (plan,) = resolve(["*"], [NODES[2]])
    assert (plan.node_id, plan.error) == (None, NO_ONLINE_NODE)
