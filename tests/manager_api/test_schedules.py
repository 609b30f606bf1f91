"""Schedules REST API without the duties: create, list, detail, pause, resume, delete, bad input, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from manager_api.models import AuditLog, Schedule
from shared.schedule_triggers import crontab_trigger, next_fire, standard_weekdays


def make(client: FlaskClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    """POST /api/schedules with sensible defaults; checks the status code."""
    payload = {"name": "every-minute", "command": "uptime", "targets": ["*"], "interval": 60, **body}
    response = client.post("/api/schedules", json=payload)
    assert response.status_code == expect, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_create_interval_schedule_answers_its_json(client: FlaskClient) -> None:
    body = make(client, name="uptime", targets=["role=web", "db-01"], timeout=30, env={"A": "1"}, description="d")
    assert set(body) >= {"id", "paused", "next_run_at", "last_run_at", "last_task_id", "created_by", "created_at"}
    assert body["name"] == "uptime" and body["command"] == "uptime" and body["targets"] == ["role=web", "db-01"]
    assert body["timeout"] == 30 and body["env_keys"] == ["A"] and "env" not in body and body["description"] == "d"
    assert body["interval"] == 60 and body["cron"] is None and body["paused"] is False
    assert body["last_run_at"] is None and body["last_task_id"] is None
    assert body["created_by"].startswith("anonymous@")
    # Intervals count from the creation: the first run is one interval later.
    assert parse(body["next_run_at"]) - parse(body["created_at"]) == timedelta(seconds=60)


def test_create_cron_schedule_computes_next_run_in_utc(client: FlaskClient) -> None:
    body = make(client, interval=None, cron="*/5 * * * *")
    assert body["cron"] == "*/5 * * * *" and body["interval"] is None
    nxt = parse(body["next_run_at"])
    assert nxt.minute % 5 == 0 and nxt.second == 0
    assert timedelta(0) <= nxt - datetime.now(UTC) <= timedelta(minutes=5)


def test_list_detail_pause_resume_delete_and_audit(client: FlaskClient) -> None:
    first = make(client, name="a")
    second = make(client, name="b", interval=None, cron="0 3 * * 1-5")
    listed = client.get("/api/schedules").get_json()["schedules"]
    assert [s["id"] for s in listed] == [first["id"], second["id"]]
    shown = client.get(f"/api/schedules/{first['id']}").get_json()
    assert shown["recent_task_ids"] == [] and shown["id"] == first["id"]

    paused = client.post(f"/api/schedules/{first['id']}/pause").get_json()
    assert paused["paused"] is True and paused["next_run_at"] is None
    assert client.post(f"/api/schedules/{first['id']}/pause").status_code == 200  # twice: no change
    resumed = client.post(f"/api/schedules/{first['id']}/resume").get_json()
    assert resumed["paused"] is False and parse(resumed["next_run_at"]) > datetime.now(UTC)

    assert client.delete(f"/api/schedules/{first['id']}").status_code == 200
    assert client.get(f"/api/schedules/{first['id']}").status_code == 404
    assert client.post(f"/api/schedules/{first['id']}/pause").status_code == 404
    assert [s["id"] for s in client.get("/api/schedules").get_json()["schedules"]] == [second["id"]]

    actions = [(row.action, row.target) for row in AuditLog.select().order_by(AuditLog.id)]
    assert actions == [
        ("schedule.create", first["id"]),
        ("schedule.create", second["id"]),
        ("schedule.pause", first["id"]),
        ("schedule.resume", first["id"]),
        ("schedule.delete", first["id"]),
    ]
    assert all(row.actor.startswith("anonymous@") for row in AuditLog.select())


def test_unknown_schedule_is_404(client: FlaskClient) -> None:
    for call in (client.get, client.delete):
        response = call("/api/schedules/nope")
        assert response.status_code == 404 and response.get_json() == {"error": "Schedule not found"}
    assert client.post("/api/schedules/" + "x" * 100 + "/resume").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *", "interval": None}, "cron"),
        ({"cron": "* * *", "interval": None}, "cron"),
        ({"cron": "0 0 * * 8", "interval": None}, "cron"),
        ({"cron": "*/5 * * * *"}, "cron"),  # both cron and interval
        ({"interval": None}, "cron"),  # neither
        ({"interval": 0}, "interval"),
        ({"interval": 1.5}, "interval"),
        ({"command": "   "}, "command"),
        ({"command": None}, "command"),
        ({"targets": []}, "targets"),
        ({"targets": [""]}, "targets"),
        ({"targets": "web-01"}, "targets"),
        ({"timeout": 0}, "timeout"),
        ({"name": ""}, "name"),
        ({"env": {"A": 1}}, "env"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(client: FlaskClient, change: dict[str, Any], field: str) -> None:
    payload = {"name": "s", "command": "uptime", "targets": ["*"], "interval": 60, **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    response = client.post("/api/schedules", json=payload)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"].startswith(f"Invalid request format: {field}"), body
    assert field in body["errors"]
    assert Schedule.select().count() == 0 and AuditLog.select().count() == 0


def test_duplicate_name_is_a_409_conflict_naming_the_field(client: FlaskClient) -> None:
    make(client, name="nightly")
    response = client.post(
        "/api/schedules", json={"name": " nightly ", "command": "x", "targets": ["*"], "interval": 5}
    )
    assert response.status_code == 409
    body = response.get_json()
    # A well-formed request that conflicts: no "Invalid request format" prefix, which is for 400s.
    assert body["error"] == "Schedule name 'nightly' is taken"
    assert body["errors"] == {"name": ["a schedule named 'nightly' already exists"]}
    assert Schedule.select().count() == 1
    assert json.loads(AuditLog.get().detail) == {"name": "nightly", "interval": 60}


def test_cron_weekdays_keep_their_crontab_meaning() -> None:
    # APScheduler 3 alone would read 1-5 as Tuesday..Saturday.
    assert standard_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert standard_weekdays("0") == standard_weekdays("7") == "sun"
    assert standard_weekdays("*/2") == "sun,tue,thu,sat"
    assert standard_weekdays("sat,1") == "mon,sat"
    thursday = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    assert next_fire(crontab_trigger("0 9 * * 1-5"), thursday) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert next_fire(crontab_trigger("0 9 * * 0"), thursday) == datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    for bad in ("5-1", "8", "*/0", "funday"):
        with pytest.raises(ValueError):
            standard_weekdays(bad)
