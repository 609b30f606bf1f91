"""Applying the agents' task events (deployment tasks' state changes) to the database, idempotently."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from manager_api.models import DeploymentTask, utcnow
from manager_api.services.deployments.actions import recompute
from manager_api.services.report_batches import Report, ReportKind
from manager_api.services.serialize import from_unix
from shared import acks
from shared.states import ENDED_TASK_STATES, TaskState

logger = logging.getLogger(__name__)


def store(event: Report) -> bool:
    """Apply one validated TaskEventSchema event (inside a write transaction); returns whether the task changed.

    An ended task never changes again; RUNNING on a STOPPING task records the pid but keeps STOPPING.
    """
    task_id = event["task_id"]
    task = _task_of(event)
    if task is None:
        return False
    current, new_state = TaskState(task.state), TaskState(event["state"])
    if current in ENDED_TASK_STATES:
        logger.debug("task %s already %s, %s task event ignored", task_id, current.value, new_state.value)
        return False
    changes = _changes(task, current, new_state, event)
    if not changes:
        return False
    changes[DeploymentTask.updated_at] = utcnow()
    DeploymentTask.update(changes).where(DeploymentTask.id == task_id).execute()
    recompute(task.deployment_id)
    logger.info(
        "task %s of deployment %s on node %s: %s -> %s (pid %s, exit %s)",
        task_id,
        event["deployment_id"],
        event["node_id"],
        current.value,
        changes.get(DeploymentTask.state, current.value),
        event.get("pid"),
        event.get("exit_code"),
    )
    return True


def _task_of(event: Report) -> DeploymentTask | None:
    """The task the event is about, or None (logged) when there is none or it is another deployment's or node's."""
    task_id = event["task_id"]
    task = DeploymentTask.get_or_none(DeploymentTask.id == task_id)
    if task is None:
        logger.warning(
            "task event for unknown task %s (deployment %s, node %s) ignored",
            task_id,
            event["deployment_id"],
            event["node_id"],
        )
        return None
    if task.deployment_id != event["deployment_id"] or task.node_id != event["node_id"]:
        logger.warning(
            "task event for task %s names deployment %s / node %s, expected %s / %s; ignored",
            task_id,
            event["deployment_id"],
            event["node_id"],
            task.deployment_id,
            task.node_id,
        )
        return None
    task_row: DeploymentTask = task
    return task_row


def _changes(task: DeploymentTask, current: TaskState, new_state: TaskState, event: Report) -> dict[Any, Any]:
    """The columns an event of a task not ended yet changes (empty: none)."""
    changes: dict[Any, Any] = {}
    if event.get("pid") is not None and event["pid"] != task.pid:
        changes[DeploymentTask.pid] = event["pid"]
    started: datetime | None = from_unix(event.get("started_at")) if event.get("started_at") is not None else None
    if new_state == TaskState.RUNNING:
        if started is None and task.started_at is None:
            started = from_unix(event["at"])
        if started is not None and task.started_at is None:
            changes[DeploymentTask.started_at] = started
        if current == TaskState.PENDING:
            changes[DeploymentTask.state] = new_state.value
    else:
        changes[DeploymentTask.state] = new_state.value
        changes[DeploymentTask.exit_code] = event.get("exit_code")
        changes[DeploymentTask.error] = event.get("error")
        changes[DeploymentTask.ended_at] = from_unix(event["at"])
        if started is not None and task.started_at is None:
            changes[DeploymentTask.started_at] = started
    return changes


def _changed_count(stored: list[tuple[Report, bool]]) -> int:
    # Each event recomputes its deployment as it is stored: a deployment's next state depends on its last.
    return sum(1 for _, changed in stored if changed)


KIND: ReportKind[bool, int] = ReportKind(
    what="task event",
    about=lambda event: f"task {event.get('task_id')} ({event.get('state')})",
    store=store,
    settle=_changed_count,
    ack_kind=acks.TASK,
    # Every state is acknowledged, applied or not (a task that ended already): its node stops sending it.
    ack_name=lambda event: f"{event['task_id']}:{event['state']}",
)
"""Task events as the duties apply them in batches (services.report_batches)."""
