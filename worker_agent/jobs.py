"""The job functions the manager enqueues by name (shared.jobs); they hand the work to the Supervisor
(deployment tasks), the CommandRunner (fleet task commands), the ComponentManager (business components) or
AppInstances (app instances).

They return at once: a start spawns and returns, a stop sends SIGTERM and leaves the SIGKILL to the
supervisor's monitor thread, a command runs in the runner's threads, so a long command never delays the
next job on the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.messages import (
    CancelCommandSchema,
    ComponentSpecSchema,
    InstanceSpecSchema,
    RunCommandSchema,
    StartTaskSchema,
    StopComponentSchema,
    StopInstanceSchema,
    StopTasksSchema,
    schema_of,
)

if TYPE_CHECKING:
    from .agent_schedules.firing import AgentSchedules
    from .app_instances.manager import AppInstances
    from .components.manager import ComponentManager
    from .deployment_tasks.supervisor import Supervisor
    from .fleet_commands.runner import CommandRunner

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Registered(Generic[T]):
    """The one object of a kind (``kind`` names it in errors) that the job functions of this process delegate to."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.value: T | None = None
        self.make: Callable[[], T] | None = None

    def set(self, value: T | Callable[[], T] | None) -> None:
        """The object, or what returns it at each job (the agent makes some managers at their first job)."""
        if callable(value):
            self.value, self.make = None, value
        else:
            self.value, self.make = value, None

    def get(self) -> T:
        # A job run without one fails loudly instead of doing nothing.
        value = self.make() if self.make is not None else self.value
        if value is None:
            raise RuntimeError(f"no {self.kind} registered in this process; the agent registers one at start")
        return value


_supervisor: _Registered[Supervisor] = _Registered("Supervisor")
_commands: _Registered[CommandRunner] = _Registered("CommandRunner")
_components: _Registered[ComponentManager] = _Registered("ComponentManager")
_instances: _Registered[AppInstances] = _Registered("AppInstances")
_agent_schedules: _Registered[AgentSchedules] = _Registered("AgentSchedules")


def register(supervisor: Supervisor | None) -> None:
    """Make ``supervisor`` the one the task job functions delegate to (None to forget it)."""
    _supervisor.set(supervisor)


def start_task(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.START_TASK: start one task's command, once per task id."""
    task = schema_of(StartTaskSchema).load(payload)
    supervisor = _supervisor.get()
    logger.info(
        "node %s task %s: start requested (deployment %s)",
        supervisor.node_id,
        task["task_id"],
        task["deployment_id"],
    )
    return supervisor.start(task)


def stop_tasks(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.STOP_TASKS: stop the process trees of some tasks."""
    request = schema_of(StopTasksSchema).load(payload)
    supervisor = _supervisor.get()
    logger.info(
        "node %s: stop requested for tasks %s (grace %.1fs)",
        supervisor.node_id,
        ", ".join(request["task_ids"]),
        request["grace_seconds"],
    )
    return {"tasks": supervisor.stop(request["task_ids"], request["grace_seconds"], request["deployment_id"])}


def register_commands(runner: CommandRunner | None) -> None:
    """Make ``runner`` the one the command job functions delegate to (None to forget it)."""
    _commands.set(runner)


def run_command(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.RUN_COMMAND: run one fleet task's command in the background, once per task id."""
    request = schema_of(RunCommandSchema).load(payload)
    runner = _commands.get()
    # Debug only: the runner logs what became of it (running with its pid, ignored, expired, could not start).
    logger.debug("node %s task %s: run command requested", runner.node_id, request["task_id"])
    return runner.run(request)


def cancel_command(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.CANCEL_COMMAND: kill the process group of a fleet task's command."""
    request = schema_of(CancelCommandSchema).load(payload)
    runner = _commands.get()
    logger.info("node %s task %s: cancel command requested", runner.node_id, request["task_id"])
    return runner.cancel(request["task_id"])


def register_agent_schedules(schedules: AgentSchedules | None) -> None:
    """Make ``schedules`` the one SYNC_AGENT_SCHEDULES delegates to (None to forget it)."""
    _agent_schedules.set(schedules)


def sync_agent_schedules(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.SYNC_AGENT_SCHEDULES: hold this node's new set of agent-side schedules, when newer."""
    return _agent_schedules.get().apply(payload)


def register_components(manager: ComponentManager | Callable[[], ComponentManager] | None) -> None:
    """Make ``manager`` (or what a call of it returns) the one the component job functions delegate to (None to
    forget it)."""
    _components.set(manager)


def deploy_component(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.DEPLOY_COMPONENT: start (or replace with a newer generation) one business component."""
    spec = schema_of(ComponentSpecSchema).load(payload)
    manager = _components.get()
    logger.info(
        "node %s business %s component %s gen %s: deploy requested (%s)",
        manager.node_id,
        spec["business_id"],
        spec["component_id"],
        spec["generation"],
        spec["type"],
    )
    return manager.deploy(spec)


def stop_component(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.STOP_COMPONENT: stop and remove one business component (generations up to the given one)."""
    request = schema_of(StopComponentSchema).load(payload)
    manager = _components.get()
    logger.info(
        "node %s business %s component %s: stop requested (gen <= %s, grace %.1fs)",
        manager.node_id,
        request["business_id"],
        request["component_id"],
        request["generation"] or "any",
        request["grace_seconds"],
    )
    return manager.stop(request)


def register_instances(instances: AppInstances | Callable[[], AppInstances] | None) -> None:
    """Make ``instances`` (or what a call of it returns) the one the app instance job functions delegate to (None
    to forget it)."""
    _instances.set(instances)


def run_instance(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.RUN_INSTANCE: start one app instance and keep it running (a held instance id is a no-op)."""
    spec = schema_of(InstanceSpecSchema).load(payload)
    instances = _instances.get()
    logger.info(
        "node %s app %s instance %s (version %s): run requested",
        instances.node_id,
        spec["app"],
        spec["instance_id"],
        spec["version"],
    )
    return instances.run(spec)


def stop_instance(payload: dict[str, Any]) -> dict[str, Any]:
    """shared.jobs.STOP_INSTANCE: stop one app instance for good (its kill signal, SIGKILL after the grace)."""
    request = schema_of(StopInstanceSchema).load(payload)
    instances = _instances.get()
    logger.info(
        "node %s app %s instance %s: stop requested (signal %s, grace %.1fs)",
        instances.node_id,
        request["app"],
        request["instance_id"],
        request["kill_signal"],
        request["grace_seconds"],
    )
    return instances.stop(request)
