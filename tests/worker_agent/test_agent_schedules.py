"""The agent's set of on_agent schedules: versions, its file, and firing from the agent's own clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support import wait_until
from worker_agent.agent_schedules import schedule_set
from worker_agent.agent_schedules.firing import AgentSchedules, task_id_of
from worker_agent.agent_schedules.schedule_set import SET_FILE, ScheduleSet


def entry(schedule_id: str = "s1", paused: bool = False, interval: int = 1) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "name": f"name-{schedule_id}",
        "command": "echo hi",
        "timeout": 5.0,
        "env": {"A": "1"},
        "cron": None,
        "interval": interval,
        "created_at": datetime.now(UTC).timestamp() - 0.5,
        "paused": paused,
    }


class Runs:
    """Collects what would have been handed to the CommandRunner."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append(request)
        return {"started": True}


def test_only_a_newer_set_replaces_the_held_one(tmp_path: Path) -> None:
    runs = Runs()
    held = AgentSchedules(tmp_path, "n1", runs).start()
    try:
        assert held.apply({"version": 2, "schedules": [entry(paused=True)]})["applied"] is True
        assert held.apply({"version": 1, "schedules": []}) == {"applied": False, "version": 2}  # older: ignored
        assert held.apply({"version": 2, "schedules": []}) == {"applied": False, "version": 2}  # same: ignored
        assert held.version == 2 and held.active() == []  # paused: held, not fired
        assert schedule_set.load(tmp_path).schedules[0]["id"] == "s1"
        assert (tmp_path / SET_FILE).stat().st_mode & 0o777 == 0o600
        assert held.apply({"version": 3, "schedules": [{"id": "bad"}]})["applied"] is False  # malformed
    finally:
        held.close()


def test_fires_each_tick_under_a_task_id_of_its_due_time(tmp_path: Path) -> None:
    runs = Runs()
    held = AgentSchedules(tmp_path, "n1", runs).start()
    try:
        held.apply({"version": 1, "schedules": [entry()]})
        assert held.active() == ["s1"]
        wait_until(lambda: len(runs.requests) >= 2, timeout=5, what="two firings")
        first, second = runs.requests[:2]
        fired_at = datetime.fromisoformat(first["schedule"]["fired_at"])
        assert first["task_id"] == task_id_of("s1", fired_at) != second["task_id"]
        assert first["command"] == "echo hi" and first["env"] == {"A": "1"} and first["timeout"] == 5.0
        assert (datetime.fromisoformat(second["schedule"]["fired_at"]) - fired_at).total_seconds() == 1.0
        # Paused by a newer set: no more firings.
        held.apply({"version": 2, "schedules": [entry(paused=True)]})
        count = len(runs.requests)
        assert held.active() == []
    finally:
        held.close()
    assert len(runs.requests) == count


def test_a_restarted_agent_fires_the_set_it_held(tmp_path: Path) -> None:
    schedule_set.save(tmp_path, ScheduleSet(4, [entry()]))
    runs = Runs()
    held = AgentSchedules(tmp_path, "n1", runs).start()  # no manager: from the file alone
    try:
        assert held.version == 4
        wait_until(lambda: runs.requests, timeout=5, what="a firing from the held set")
    finally:
        held.close()


def test_a_file_that_does_not_read_holds_nothing(tmp_path: Path) -> None:
    (tmp_path / SET_FILE).write_text("{not json")
    assert schedule_set.load(tmp_path) == ScheduleSet()


def test_the_task_id_of_a_firing_is_stable() -> None:
    due = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert task_id_of("s1", due) == task_id_of("s1", due) != task_id_of("s2", due)
