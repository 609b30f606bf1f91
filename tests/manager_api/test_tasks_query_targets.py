"""Fleet task and schedule targets ``query:<node query>``: the nodes GET /api/nodes?q= would list, no more."""

from __future__ import annotations

from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.models import AuditLog, FleetTask, Schedule
from manager_api.services.fleet_tasks.targets import NO_MATCH, NODE_OFFLINE, resolve
from manager_api.services.placement.model import Candidate
from manager_api.services.schedules import actions as schedules
from shared import jobs

from .conftest import answer
from .tasks_helpers import create, queued
from .test_node_tags import found, join_fleet, put_tags


@pytest.fixture
def fleet(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    """web-1 (web, ssd, 4 cpus) and web-2 (web, 2 cpus) online, db-1 (db, ssd, 16 cpus) offline."""
    join_fleet(client, redis_client)


def hosts(task: dict[str, Any]) -> list[tuple[str | None, str, str, str | None]]:
    return [(h["host_id"], h["target"], h["status"], h["error_message"]) for h in task["hosts"]]


def test_a_query_target_reaches_exactly_the_nodes_the_query_lists(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    target = "query:tags:web AND os.cpus:>2"
    assert found(client, "tags:web AND os.cpus:>2") == ["w1"]
    task = create(client, targets=[target])
    assert hosts(task) == [("w1", target, "pending", None)]
    (job,) = queued(redis_client, "w1")
    assert job.func_name == jobs.RUN_COMMAND and job.args[0]["task_id"] == task["task_id"]
    assert queued(redis_client, "w2") == [] and queued(redis_client, "d1") == []


def test_offline_and_unmatched_query_targets_fail_as_other_targets_do(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    task = create(client, targets=["web-2", "query:tags:ssd", " query:tags:web ", "query:tags:nope"])
    assert hosts(task) == [
        ("w2", "web-2", "pending", None),
        ("w1", "query:tags:ssd", "pending", None),
        ("d1", "query:tags:ssd", "dispatch_failed", NODE_OFFLINE),
        (None, "query:tags:nope", "dispatch_failed", NO_MATCH),
    ]  # each node once: tags:web named only nodes already planned, so it adds no row
    assert [len(queued(redis_client, n)) for n in ("w1", "w2", "d1")] == [1, 1, 0]


def test_a_query_is_resolved_when_the_task_starts(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    task = create(client, start=False, targets=["query:tags:canary"])
    assert task["hosts"] == [] and task["status"] == "pending"
    put_tags(client, "w2", ["canary"])
    started = answer(client.post(f"/api/tasks/{task['task_id']}/start"))
    assert hosts(started) == [("w2", "query:tags:canary", "pending", None)]
    assert len(queued(redis_client, "w2")) == 1 and queued(redis_client, "w1") == []


@pytest.mark.parametrize("start", [True, False])
def test_a_malformed_query_target_is_a_400_naming_targets_and_creates_nothing(
    client: FlaskClient, fleet: None, start: bool
) -> None:
    for bad in ["query:tags:(web", "query:", "query:hostnam~1", "query:disks.dirName:/data"]:
        refused = create(client, expect=400, start=start, targets=["web-1", bad])
        assert refused["error"].startswith("Invalid request format: targets: "), refused
        assert list(refused["errors"]) == ["targets"] and bad in refused["errors"]["targets"][0]
    assert FleetTask.select().count() == 0
    assert AuditLog.select().where(AuditLog.action.startswith("task.")).count() == 0
    assert queued(client.application.extensions["corral"].redis, "w1") == []


def test_schedules_check_query_targets_when_created_and_fire_on_the_matching_nodes(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet: None
) -> None:
    body = {"name": "s", "command": "uptime", "interval": 3600}
    refused = answer(client.post("/api/schedules", json={**body, "targets": ["query:tags:(ssd"]}), 400)
    assert refused["error"].startswith("Invalid request format: targets: ") and "targets" in refused["errors"]
    assert Schedule.select().count() == 0
    assert AuditLog.select().where(AuditLog.action.startswith("schedule.")).count() == 0

    created = answer(client.post("/api/schedules", json={**body, "targets": ["query:tags:ssd AND os.cpus:<8"]}), 201)
    row = Schedule.get_by_id(created["id"])
    task_id = schedules.fire(redis_client, row.id, row.version, 3)
    assert task_id is not None
    task = answer(client.get(f"/api/tasks/{task_id}"))
    assert [h["host_id"] for h in task["hosts"]] == ["w1"] and task["created_by"] == "schedule:s"


def test_resolve_plans_the_selected_nodes_in_node_order() -> None:
    nodes = [Candidate("a", "h-a", True, ip="10.0.0.1"), Candidate("b", "h-b", False, ip="10.0.0.2")]
    plans = resolve(["query:x", "query:y"], nodes, {"query:x": frozenset({"b", "a"}), "query:y": frozenset()})
    assert [(p.target, p.node_id, p.error) for p in plans] == [
        ("query:x", "a", None),
        ("query:x", "b", NODE_OFFLINE),
        ("query:y", None, NO_MATCH),
    ]
    (unread,) = resolve(["query:z"], nodes)  # a query nobody selected for matches nothing
    assert (unread.node_id, unread.error) == (None, NO_MATCH)
