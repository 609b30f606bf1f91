"""The API's presenters on rows built in memory: what the public JSON shows and what it never echoes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from manager_api.api.presenters import businesses as business_json
from manager_api.api.presenters import fleet_tasks as fleet_task_json
from manager_api.api.presenters.serialize import iso, page_json
from manager_api.api.presenters.templates import template_json
from manager_api.models import BusinessComponent, TaskHost, Template


def test_a_component_shows_its_environment_keys_and_config_paths_never_their_values() -> None:
    row = BusinessComponent(
        component_id="c1",
        component_name="web",
        type="process",
        command="serve",
        environment_variables=json.dumps({"TOKEN": "s3cret", "A": "1"}),
        config_files=json.dumps([{"path": "/etc/app.conf", "content": "password=s3cret"}, "junk"]),
        resource_requirements="not json",
    )
    [shown] = business_json.components_json([(row, "web-01")])
    assert (shown["hostname"], shown["environment_keys"], shown["config_paths"]) == (
        "web-01",
        ["A", "TOKEN"],
        ["/etc/app.conf"],
    )
    assert shown["resource_requirements"] == {} and shown["resource_usage"] is None
    assert "s3cret" not in json.dumps(shown)


def test_a_host_execution_time_and_a_task_progress() -> None:
    host = TaskHost(started_at=datetime(2026, 1, 1, 0, 0, 0), finished_at=datetime(2026, 1, 1, 0, 0, 1, 250_000))
    assert fleet_task_json.execution_ms(host) == 1250
    assert fleet_task_json.execution_ms(TaskHost(started_at=datetime(2026, 1, 1))) is None
    counts = {"total": 3, "ended": 2, "succeeded": 1, "failed": 1, "running": 1, "pending": 0}
    assert fleet_task_json.progress(counts) == {**counts, "percent": 67}
    assert fleet_task_json.progress({**counts, "total": 0, "ended": 0})["percent"] == 0


def test_iso_writes_utc_with_a_z_and_reads_naive_times_as_utc() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    assert iso(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-02T03:04:05Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC)) == "2026-01-02T03:04:05.000600Z"


def test_page_json_puts_the_items_under_their_key_with_the_page() -> None:
    assert page_json("things", [1, 2], 7, 2, 2) == {"things": [1, 2], "total": 7, "page": 2, "page_size": 2}


def test_template_json_shows_a_pin_in_config_host_only_when_there_is_one() -> None:
    tasks = [{"name": "a", "config": {"command": "run a", "host": "n1"}}, {"name": "b", "config": {"command": "run b"}}]
    spec = [{"tasks": tasks}]
    template = Template(name="t", spec=json.dumps(spec))
    assert template_json(template) == {
        "name": "t",
        "task_groups": [
            {
                "tasks": [
                    {"name": "a", "config": {"command": "run a", "host": "n1"}},
                    {"name": "b", "config": {"command": "run b"}},
                ]
            }
        ],
    }
