"""Schedules fired by the duties' scheduler: one task per tick, pause/resume/delete, restart, misfires."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.models import FleetTask, Schedule, utcnow
from shared import jobs
from tests.support import wait_until

from .tasks_helpers import add_node, queued


def make(client: FlaskClient, **body: Any) -> dict[str, Any]:
    payload = {"name": "tick", "command": "echo tick", "targets": ["web-01"], "interval": 1, **body}
    response = client.post("/api/schedules", json=payload)
    assert response.status_code == 201, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def fired(name: str) -> list[FleetTask]:
    """Tasks fired by the schedule ``name``, oldest first."""
    query = FleetTask.select().where(FleetTask.created_by == f"schedule:{name}")
    return list(query.order_by(FleetTask.created_at, FleetTask.id))


def test_interval_fires_one_task_per_tick_even_with_two_managers(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    other = Duties(settings, tick=0.1, block_ms=100, consumer="duties-other")  # a second manager host
    other.start()
    try:
        schedule = make(client)
        created = Schedule.get_by_id(schedule["id"]).created_at
        wait_until(lambda: len(fired("tick")) >= 1, timeout=5, what="first firing")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            ticks = math.floor((utcnow() - created).total_seconds())
            count = len(fired("tick"))
            assert abs(count - ticks) <= 1, (count, ticks)
            time.sleep(0.1)
    finally:
        other.stop()
        other.redis.close()
    tasks = fired("tick")
    assert len(tasks) >= 3
    assert all(t.name == "tick" and t.command == "echo tick" and t.status == "running" for t in tasks)
    assert len({t.task_id for t in tasks}) == len(tasks)
    runs = [job for job in queued(redis_client, "n1") if job.func_name == jobs.RUN_COMMAND]
    assert sorted(job.args[0]["task_id"] for job in runs) == sorted(t.task_id for t in tasks)

    shown = client.get(f"/api/schedules/{schedule['id']}").get_json()
    recent = shown["recent_task_ids"]
    assert set(recent) <= {t.task_id for t in fired("tick")} and len(recent) >= 3
    assert shown["last_task_id"] in recent and shown["last_run_at"] is not None
    assert wait_until(
        lambda: (row := Schedule.get_by_id(schedule["id"])).next_run_at and row.next_run_at > row.last_run_at,
        what="next run recorded after the last one",
    )


def test_pause_resume_and_delete_take_effect(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    schedule = make(client)
    wait_until(lambda: len(fired("tick")) >= 1, timeout=5, what="first firing")
    assert client.post(f"/api/schedules/{schedule['id']}/pause").status_code == 200
    paused_at = len(fired("tick"))
    until = time.monotonic() + 2
    while time.monotonic() < until:
        assert len(fired("tick")) == paused_at
        time.sleep(0.1)
    assert Schedule.get_by_id(schedule["id"]).next_run_at is None

    assert client.post(f"/api/schedules/{schedule['id']}/resume").status_code == 200
    wait_until(lambda: len(fired("tick")) > paused_at, timeout=5, what="firing after resume")

    assert client.delete(f"/api/schedules/{schedule['id']}").status_code == 200
    deleted_at = len(fired("tick"))
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        assert len(fired("tick")) == deleted_at
        time.sleep(0.1)


def test_a_restarted_manager_rebuilds_from_the_table_without_refiring(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    hourly = make(client, name="hourly", interval=3600)
    # Down for 10 s across a due tick: it fires once at start (within the misfire grace), coalesced.
    born = utcnow() - timedelta(seconds=3610)
    Schedule.update(created_at=born, next_run_at=born + timedelta(seconds=3600)).where(
        Schedule.id == hourly["id"]
    ).execute()
    # A tick of this one already fired on the manager that went away: it must not fire again.
    done = make(client, name="done", interval=3600)
    Schedule.update(
        created_at=utcnow() - timedelta(seconds=3601), next_run_at=utcnow() - timedelta(seconds=1), last_run_at=utcnow()
    ).where(Schedule.id == done["id"]).execute()

    worker = Duties(settings, tick=0.1, block_ms=100)
    worker.start()
    try:
        wait_until(lambda: len(fired("hourly")) == 1, timeout=5, what="the missed tick fired once")
        wait_until(
            lambda: Schedule.get_by_id(hourly["id"]).next_run_at > utcnow() + timedelta(seconds=3500),
            what="next run recomputed an hour ahead",
        )
        time.sleep(0.3)
        assert len(fired("hourly")) == 1
        assert fired("done") == []
        assert Schedule.get_by_id(done["id"]).next_run_at > utcnow() + timedelta(seconds=3500)
    finally:
        worker.stop()
        worker.redis.close()
