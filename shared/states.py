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


class BusinessState(StrEnum):
    """Life of a business (document 001 §8)."""

    PENDING = "pending"  # accepted, not yet placed
    DEPLOYING = "deploying"  # components sent to their nodes, not all running yet
    RUNNING = "running"  # every component runs
    FAILED = "failed"  # a component failed (its reason is on the component)
    STOPPING = "stopping"  # a stop was requested, some components still run
    STOPPED = "stopped"  # every component stopped
    UPDATING = "updating"  # an update is replacing, adding or removing components


class ComponentState(StrEnum):
    """Life of one component of a business (document 001 §8)."""

    PENDING = "pending"  # placed, sent to its node's queue
    DOWNLOADING = "downloading"  # the agent fetches its image
    STARTING = "starting"  # the agent creates and starts the process or container
    RUNNING = "running"
    FAILED = "failed"  # could not start, exited, or its node was lost; see error_message
    STOPPING = "stopping"
    STOPPED = "stopped"

    @property
    def active(self) -> bool:
        """Whether the component holds (or is about to hold) resources on its node."""
        return self not in (ComponentState.FAILED, ComponentState.STOPPED)


AGENT_REPORTED_COMPONENT_STATES = frozenset(
    {
        ComponentState.DOWNLOADING,
        ComponentState.STARTING,
        ComponentState.RUNNING,
        ComponentState.FAILED,
        ComponentState.STOPPING,
        ComponentState.STOPPED,
    }
)
"""The states an agent may put in a component report."""


class ComponentType(StrEnum):
    """How an agent runs a component."""

    PROCESS = "process"  # a supervised process tree, like a deployment task
    DOCKER = "docker"  # a container through the Docker Engine API
