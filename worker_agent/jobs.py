"""The job functions the manager enqueues by name (shared.jobs); they hand the work to the Supervisor.

They return at once: a start spawns and returns, a stop sends SIGTERM and leaves the SIGKILL to the
supervisor's monitor thread, so a long command never delays the next job on the queue.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.messages import StartTaskSchema, StopTasksSchema

if TYPE_CHECKING:
    from .supervisor import Supervisor

logger = logging.getLogger(__name__)

_supervisor: Supervisor | None = None


def register(supervisor: Supervisor | None) -> None:
    """Make ``supervisor`` the one the job functions of this process delegate to (None to forget it)."""
    global _supervisor
    _supervisor = supervisor


def current_supervisor() -> Supervisor:
    """The registered supervisor; a job run without one fails loudly instead of doing nothing."""
    if _supervisor is None:
        raise RuntimeError("no Supervisor registered in this process; the agent registers one at start")
    return _supervisor


def start_task(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.START_TASK: start one task's command, once per task id."""
    task = StartTaskSchema().load(payload)
    supervisor = current_supervisor()
    logger.info(
        "node %s task %s: start requested (deployment %s)",
        supervisor.node_id,
        task["task_id"],
        task["deployment_id"],
    )
    return supervisor.start(task)


def stop_tasks(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.STOP_TASKS: stop the process trees of some tasks."""
    request = StopTasksSchema().load(payload)
    supervisor = current_supervisor()
    logger.info(
        "node %s: stop requested for tasks %s (grace %.1fs)",
        supervisor.node_id,
        ", ".join(request["task_ids"]),
        request["grace_seconds"],
    )
    return {"tasks": supervisor.stop(request["task_ids"], request["grace_seconds"])}
