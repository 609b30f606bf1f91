"""The job functions the manager enqueues by name (shared.jobs); they hand the work to the Supervisor
(deployment tasks) or to the CommandRunner (fleet task commands).

They return at once: a start spawns and returns, a stop sends SIGTERM and leaves the SIGKILL to the
supervisor's monitor thread, a command runs in the runner's threads, so a long command never delays the
next job on the queue.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.messages import CancelCommandSchema, RunCommandSchema, StartTaskSchema, StopTasksSchema

if TYPE_CHECKING:
    from .commands import CommandRunner
    from .supervisor import Supervisor

logger = logging.getLogger(__name__)

_supervisor: Supervisor | None = None
_commands: CommandRunner | None = None


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
    return {"tasks": supervisor.stop(request["task_ids"], request["grace_seconds"], request["deployment_id"])}


def register_commands(runner: CommandRunner | None) -> None:
    """Make ``runner`` the one the command job functions of this process delegate to (None to forget it)."""
    global _commands
    _commands = runner


def current_commands() -> CommandRunner:
    """The registered command runner; a job run without one fails loudly instead of doing nothing."""
    if _commands is None:
        raise RuntimeError("no CommandRunner registered in this process; the agent registers one at start")
    return _commands


def run_command(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.RUN_COMMAND: run one fleet task's command in the background, once per task id."""
    request = RunCommandSchema().load(payload)
    runner = current_commands()
    logger.info("node %s task %s: run command requested", runner.node_id, request["task_id"])
    return runner.run(request)


def cancel_command(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.CANCEL_COMMAND: kill the process group of a fleet task's command."""
    request = CancelCommandSchema().load(payload)
    runner = current_commands()
    logger.info("node %s task %s: cancel command requested", runner.node_id, request["task_id"])
    return runner.cancel(request["task_id"])
