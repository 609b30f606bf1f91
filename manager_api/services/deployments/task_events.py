"""Applying the agents' task events to the database, idempotently."""

from __future__ import annotations

import logging
from typing import Any

from manager_api import db
from manager_api.models import DeploymentTask, utcnow
from manager_api.services.deployments.actions import recompute
from manager_api.services.serialize import from_unix
from shared.states import ENDED_TASK_STATES, TaskState

logger = logging.getLogger(__name__)


def apply(event: dict[str, Any]) -> bool:
    """Apply one validated TaskEventSchema event; returns whether the task changed.

    An ended task never changes again; RUNNING on a STOPPING task records the pid but keeps STOPPING.
    """
    task_id = event["task_id"]
    new_state = TaskState(event["state"])
    with db.write_transaction():
        task = DeploymentTask.get_or_none(DeploymentTask.id == task_id)
        if task is None:
            logger.warning(
                "event for unknown task %s (deployment %s, node %s) ignored",
                task_id,
                event["deployment_id"],
                event["node_id"],
            )
            return False
        if task.deployment_id != event["deployment_id"] or task.node_id != event["node_id"]:
            logger.warning(
                "event for task %s names deployment %s / node %s, expected %s / %s; ignored",
                task_id,
                event["deployment_id"],
                event["node_id"],
                task.deployment_id,
                task.node_id,
            )
            return False
        current = TaskState(task.state)
        if current in ENDED_TASK_STATES:
            logger.debug("task %s already %s, %s event ignored", task_id, current.value, new_state.value)
            return False
        changes: dict[Any, Any] = {}
        if event.get("pid") is not None and event["pid"] != task.pid:
            changes[DeploymentTask.pid] = event["pid"]
        started = from_unix(event.get("started_at")) if event.get("started_at") is not None else None
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
