"""On_agent schedules on the manager: refused options, the sets sent to the nodes (at changes and at a join), the
cron runner leaving them alone, and a firing's reports making its task once (real Redis and duties)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.models import FleetTask
from manager_api.services import job_keys
from manager_api.services.schedules import actions as schedules
from shared import heartbeat, jobs, keys
from shared.api import bearer
from tests.support import wait_until

from .conftest import answer
from .tasks_helpers import add_node, detail, queued, report


@pytest.fixture
def fleet_duties(app: Any, settings: Settings) -> Iterator[Duties]:
    worker = Duties(replace(settings, task_deadline_slack_seconds=0.2), tick=0.1, block_ms=100)
    worker.start()
    yield worker
    worker.stop()
    worker.redis.close()


def make(client: FlaskClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    payload = {"name": "agent-tick", "command": "echo hi", "targets": ["web-01"], "interval": 60, "on_agent": True}
    return answer(client.post("/api/schedules", json={**payload, **body}), expect)


def sets(redis_client: redis_lib.Redis, node_id: str) -> list[dict[str, Any]]:
    """The SYNC_AGENT_SCHEDULES payloads waiting on a node's queue, oldest first."""
    return [job.args[0] for job in queued(redis_client, node_id) if job.func_name == jobs.SYNC_AGENT_SCHEDULES]


def test_on_agent_refuses_secret_env_and_takes_a_processor(client: FlaskClient) -> None:
    refused = make(client, 400, secretEnv={"TOKEN": "s3cret"})
    assert "secretEnv" in refused["errors"]
    assert client.get("/api/schedules").get_json()["schedules"] == []
    # The manager delivers what the nodes report: nothing of the processor goes to the node.
    made = make(client, processor={"url": "http://127.0.0.1:9/p", "secret": "x" * 16})
    assert made["processor"] == {"url": "http://127.0.0.1:9"}


def test_changes_send_each_node_its_full_set_at_a_new_version(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2", online=False)
    created = make(client)
    assert created["on_agent"] is True and created["next_run_at"] is None
    assert schedules.definitions() == {}  # the manager's cron runner never holds it
    first = sets(redis_client, "n1")[-1]
    assert first["version"] == 1 and [s["id"] for s in first["schedules"]] == [created["id"]]
    assert first["schedules"][0]["command"] == "echo hi" and first["schedules"][0]["paused"] is False
    assert sets(redis_client, "n2")[-1] == {"version": 1, "schedules": []}  # not a target: an empty set

    answer(client.post(f"/api/schedules/{created['id']}/pause"))
    paused = sets(redis_client, "n1")[-1]
    assert paused["version"] == 2 and paused["schedules"][0]["paused"] is True
    answer(client.post(f"/api/schedules/{created['id']}/pause"))  # no change: nothing sent
    assert len(sets(redis_client, "n1")) == 2

    answer(client.delete(f"/api/schedules/{created['id']}"))
    assert sets(redis_client, "n1")[-1] == {"version": 3, "schedules": []}

    # A (re)join sends the node its set again, at the current version.
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    assert sets(redis_client, "n1")[-1] == {"version": 3, "schedules": []}
    entries = client.get("/api/audit", query_string={"limit": 100}).get_json()["entries"]
    versions = [e["detail"].get("agent_set_version") for e in entries if e["target"] == created["id"]]
    assert sorted(versions) == [1, 2, 3]


def test_a_manager_side_schedule_sends_no_set(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    make(client, on_agent=False)
    assert sets(redis_client, "n1") == []


def consumed(redis_client: redis_lib.Redis, node_id: str, entry_id: str | None) -> bool:
    """Whether the duties read the reports stream past ``entry_id`` and acknowledged everything they read."""
    assert entry_id is not None
    stream = keys.node_reports(node_id)
    (group,) = [
        g for g in redis_client.xinfo_groups(stream) if g["name"] in (keys.EVENTS_GROUP, keys.EVENTS_GROUP.encode())
    ]
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else str(last)
    delivered = tuple(int(part) for part in last.split("-")) >= tuple(int(part) for part in entry_id.split("-"))
    return delivered and int(group["pending"]) == 0


def test_a_firing_report_makes_its_task_once(
    client: FlaskClient, redis_client: redis_lib.Redis, fleet_duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    created = make(client)
    task_id = "0b7c9a57-1111-5222-8333-444455556666"
    firing = {
        "id": created["id"],
        "name": "agent-tick",
        "fired_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "command": "echo hi",
        "timeout": 60.0,
    }
    now = time.time()
    final = {"exit_code": 0, "stdout": "hi\n", "started_at": now, "finished_at": now, "schedule": firing}
    report(redis_client, task_id, "n1", "running", pid=5, started_at=now, schedule=firing)
    report(redis_client, task_id, "n1", "succeeded", **final)
    wait_until(lambda: detail(client, task_id)["status"] == "completed", what="the firing's task completed")
    again = report(redis_client, task_id, "n1", "succeeded", **{**final, "stdout": "other\n"})  # sent again
    wait_until(lambda: consumed(redis_client, "n1", again), what="the repeated report applied and acknowledged")
    assert FleetTask.select().where(FleetTask.task_id == task_id).count() == 1
    task = detail(client, task_id)
    assert task["created_by"] == "schedule:agent-tick" and task["hosts"][0]["stdout"] == "hi\n"
    assert task["hosts"][0]["hostname"] == "web-01" and task["total_hosts"] == 1
    shown = answer(client.get(f"/api/schedules/{created['id']}"))
    assert shown["last_task_id"] == task_id and task_id in shown["recent_task_ids"]


def test_an_operators_on_agent_schedule_reaches_only_the_nodes_of_its_scope(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    """A node that comes to match later but lies outside the creating token's node query never gets it."""
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1", labels={"zone": "a"})
    token = {"name": "ops-a", "role": "operator", "nodeQuery": "labels.zone:a", "commands": ["echo *"]}
    operator = bearer(answer(client.post("/api/tokens", json=token), 201)["token"])
    body = {"name": "zoned", "command": "echo hi", "targets": ["role=web"], "interval": 60, "on_agent": True}
    zoned = answer(client.post("/api/schedules", json=body, headers=operator), 201)
    assert sets(redis_client, "n1")[-1]["schedules"] == []  # n1 has no role=web label
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2", labels={"zone": "b", "role": "web"})
    add_node(client, redis_client, "n3", "web-03", "10.0.0.3", labels={"zone": "a", "role": "web"})
    # The next change sends the sets again, the scope read now (the node query sees the nodes online).
    answer(client.post(f"/api/schedules/{zoned['id']}/pause"))  # an admin's change
    assert [s["name"] for s in sets(redis_client, "n3")[-1]["schedules"]] == ["zoned"]
    assert all(payload["schedules"] == [] for payload in sets(redis_client, "n2"))  # outside the scope


def test_the_detail_shows_the_version_each_node_holds(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2")
    created = make(client, targets=["web-01", "web-02"])
    figures = {"interval": 5.0, "agent_schedules_version": 1}
    heartbeat.write(redis_client, "n1", figures, key=job_keys.node_key("n1"))  # n1's agent applied version 1
    shown = answer(client.get(f"/api/schedules/{created['id']}"))
    assert shown["agent_set_version"] == 1
    assert shown["agents"] == [
        {"node_id": "n1", "hostname": "web-01", "version": 1, "current": True},
        {"node_id": "n2", "hostname": "web-02", "version": None, "current": False},
    ]
    answer(client.post(f"/api/schedules/{created['id']}/pause"))
    shown = answer(client.get(f"/api/schedules/{created['id']}"))
    assert shown["agent_set_version"] == 2 and shown["agents"][0]["current"] is False
    manager_side = make(client, name="manager-side", on_agent=False)
    shown = answer(client.get(f"/api/schedules/{manager_side['id']}"))
    assert (shown["agent_set_version"], shown["agents"]) == (None, [])
