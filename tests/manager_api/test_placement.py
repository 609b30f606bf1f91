"""Placement is a pure function: spread, same-node groups, pins, offline pins, no node."""

from __future__ import annotations

import pytest

from manager_api.services.placement.model import Candidate
from manager_api.services.placement.task_groups import (
    TASK_PENALTY,
    GroupRequest,
    PlacementError,
    TaskRequest,
    place,
)


def group(index: int, *pins: str | None) -> GroupRequest:
    return GroupRequest(index=index, tasks=tuple(TaskRequest(name=f"t{index}.{i}", pin=p) for i, p in enumerate(pins)))


def node(node_id: str, cpu: float = 10, mem: float = 10, online: bool = True, active: int = 0) -> Candidate:
    return Candidate(
        node_id=node_id,
        hostname=f"host-{node_id}",
        ip=f"10.0.0.{node_id[-1]}",
        online=online,
        cpu_usage_percent=cpu,
        memory_usage_percent=mem,
        active_tasks=active,
    )


def test_groups_spread_over_equal_nodes() -> None:
    result = place([group(0, None), group(1, None), group(2, None)], [node("n1"), node("n2"), node("n3")])
    assert sorted(result.values()) == ["n1", "n2", "n3"]


def test_least_loaded_online_node_wins() -> None:
    nodes = [node("n1", cpu=90, mem=50), node("n2", cpu=5, mem=5), node("n3", cpu=1, mem=1, online=False)]
    assert place([group(0, None)], nodes) == {0: "n2"}


def test_active_tasks_count_as_load() -> None:
    busy = node("n1", cpu=0, mem=0, active=3)
    idle = node("n2", cpu=TASK_PENALTY, mem=0)
    assert place([group(0, None)], [busy, idle]) == {0: "n2"}


def test_all_tasks_of_a_group_share_a_node() -> None:
    result = place([group(0, None, None, None)], [node("n1"), node("n2")])
    assert list(result) == [0]


def test_pin_by_ip_or_hostname_pulls_the_group() -> None:
    nodes = [node("n1", cpu=0), node("n2", cpu=99)]
    assert place([group(0, None, "10.0.0.2")], nodes) == {0: "n2"}
    assert place([group(0, "HOST-n2", None)], nodes) == {0: "n2"}


def test_pinned_groups_steer_free_ones_away() -> None:
    nodes = [node("n1"), node("n2")]
    result = place([group(0, None), group(1, "10.0.0.1", None, None)], nodes)
    assert result == {1: "n1", 0: "n2"}


def test_offline_pin_is_refused_naming_task_and_node() -> None:
    with pytest.raises(PlacementError, match=r"task 't0\.0' of group 0 .*'10\.0\.0\.1'.*offline"):
        place([group(0, "10.0.0.1")], [node("n1", online=False), node("n2")])


def test_unknown_pin_is_refused() -> None:
    with pytest.raises(PlacementError, match="unknown node 'db-9'"):
        place([group(0, "db-9")], [node("n1")])


def test_conflicting_pins_in_one_group_are_refused() -> None:
    with pytest.raises(PlacementError, match="group 0 pins tasks to different nodes"):
        place([group(0, "10.0.0.1", "10.0.0.2")], [node("n1"), node("n2")])


def test_no_online_node() -> None:
    with pytest.raises(PlacementError, match="no online node to run group 0"):
        place([group(0, None)], [node("n1", online=False)])
    with pytest.raises(PlacementError, match="no online node"):
        place([group(0, None)], [])
