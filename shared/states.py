"""Status codes and state names; a leaf module with no third-party imports."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class NodeStatus(IntEnum):
    """Node ``status`` of GET /api/task/node (manual §5.3.1)."""

    ONLINE = 0
    OFFLINE = 1


class InstanceStatus(IntEnum):
    """Deployment ``status`` of POST /api/task/task_group/query (manual §5.3.3)."""

    RUNNING = 0
    STOPPED = 1


class TaskState(StrEnum):
    """Life of one task of a deployment, as GET /deployments/{id} shows it."""

    PENDING = "PENDING"  # recorded and sent to its node's queue
    RUNNING = "RUNNING"  # the agent started it and reported its pid
    COMPLETED = "COMPLETED"  # exited by itself with code 0
    FAILED = "FAILED"  # exited non-zero, or could not be started
    STOPPING = "STOPPING"  # a stop was requested
    STOPPED = "STOPPED"  # killed on request
    LOST = "LOST"  # gone while its agent was down, exit status unknown

    @property
    def ended(self) -> bool:
        return self in ENDED_TASK_STATES


ENDED_TASK_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.STOPPED, TaskState.LOST})

AGENT_REPORTED_STATES = frozenset(
    {TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED, TaskState.STOPPED, TaskState.LOST}
)
"""The states an agent may put in a task event."""


class DeploymentState(StrEnum):
    """Life of a deployment (a task group template instance)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


class FleetTaskStatus(StrEnum):
    """A fleet task (document 004): one command on many nodes."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # every node succeeded
    FAILED = "failed"  # every node ended, at least one did not succeed
    CANCELED = "canceled"


class HostRunStatus(StrEnum):
    """One node's part of a fleet task (document 004's per-host state diagram)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    DISPATCH_FAILED = "dispatch_failed"

    @property
    def ended(self) -> bool:
        return self not in (HostRunStatus.PENDING, HostRunStatus.RUNNING)


AGENT_REPORTED_HOST_STATUSES = frozenset(
    {
        HostRunStatus.RUNNING,
        HostRunStatus.SUCCEEDED,
        HostRunStatus.FAILED,
        HostRunStatus.TIMED_OUT,
        HostRunStatus.CANCELED,
    }
)
"""The statuses an agent may put in a command report."""
