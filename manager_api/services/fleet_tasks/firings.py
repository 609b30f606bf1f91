"""The fleet tasks of agent-side schedule firings: made when their first report arrives, once.

An agent fires an on_agent schedule from its own clock, under a task id derived from the schedule and the fire
time (the same firing is always the same task), and its reports say which schedule fired it. Applying them, the
manager makes the task (created_by "schedule:<name>", one host: that node) if no task has that id yet; the
report itself is then applied to the host like any other, so a report sent twice changes nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from manager_api import db
from manager_api.models import FleetTask, Node, Schedule, TaskHost, utcnow
from manager_api.services import audit
from manager_api.services.errors import Invalid
from manager_api.services.report_batches import Report
from manager_api.services.schedules.actions import created_by_of
from manager_api.services.scripts import running as script_runs
from shared.states import FleetTaskStatus, HostRunStatus

logger = logging.getLogger(__name__)


def make_missing_tasks(reports: list[Report]) -> int:
    """Make the task of every firing in ``reports`` that has none yet (inside the caller's transaction); returns
    how many were made."""
    firings = {report["task_id"]: report for report in reports if report.get("schedule")}
    if not firings:
        return 0
    query = FleetTask.select(FleetTask.task_id).where(FleetTask.task_id.in_(list(firings)))
    existing = {task_id for (task_id,) in query.tuples()}
    made = 0
    for task_id, report in firings.items():
        if task_id not in existing:
            _make(task_id, report)
            made += 1
    return made


def _fired_at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return utcnow()


def _script_ref(schedule: Schedule | None) -> str:
    """The script column of a firing of ``schedule`` (what a task's detail shows of its script), "" for a
    command, or when the schedule or its script is gone (the command still names it)."""
    if schedule is None or not schedule.script:
        return ""
    try:
        run = script_runs.prepare({"script": schedule.script, "params": json.loads(schedule.params)})
    except Invalid:
        return ""
    return json.dumps(run.ref, ensure_ascii=False)


def _make(task_id: str, report: Report) -> None:
    firing: dict[str, Any] = report["schedule"]
    node_id = report["node_id"]
    actor = created_by_of(firing["name"])
    now = utcnow()
    fired_at = _fired_at(firing["fired_at"])
    node = Node.select(Node.hostname, Node.ip).where(Node.id == node_id).first()
    # The schedule's processor, sealed as it is (the same key): the manager delivers what the node reports.
    schedule = (
        Schedule.select(Schedule.processor, Schedule.script, Schedule.params).where(Schedule.id == firing["id"]).first()
    )
    processor = schedule.processor if schedule is not None else ""
    row: dict[str, Any] = {
        "task_id": task_id,
        "name": firing["name"],
        "description": f"fired on node {node_id} at {firing['fired_at']} (on_agent schedule {firing['id']})",
        "command": firing["command"],
        "timeout": max(1, round(float(firing["timeout"]))),
        "targets": json.dumps([node_id]),
        "processor": processor,
        "processor_open": bool(processor),
        "script": _script_ref(schedule),
        "status": FleetTaskStatus.RUNNING.value,
        "total_hosts": 1,
        "created_by": actor,
        "created_at": fired_at,
        "updated_at": now,
        # Learned now: the duties' deadline counts from here, so a firing reported late is not given up at once.
        "started_at": now,
        "started_by": actor,
    }
    pk = db.insert_row(FleetTask, row)
    db.insert_rows(
        TaskHost,
        [
            {
                "task": pk,
                "node": node_id if node is not None else None,
                "target": node_id,
                "hostname": node.hostname if node is not None else "",
                "ip": node.ip if node is not None else "",
                "status": HostRunStatus.PENDING.value,
                "updated_at": now,
            }
        ],
    )
    audit.record(actor, "task.create", task_id, {"name": firing["name"], "on_agent": True, "node": node_id})
    Schedule.update(last_run_at=fired_at, last_task_id=task_id).where(
        Schedule.id == firing["id"], (Schedule.last_run_at.is_null()) | (Schedule.last_run_at < fired_at)
    ).execute()
    logger.info(
        "fleet task %s: firing of on_agent schedule %s (%s) on node %s at %s recorded",
        task_id,
        firing["id"],
        firing["name"],
        node_id,
        firing["fired_at"],
    )
