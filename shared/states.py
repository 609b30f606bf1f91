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


class WorkflowStatus(StrEnum):
    """A workflow (issue 17): steps run as their dependencies end."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # every step succeeded
    FAILED = "failed"  # every step ended, at least one did not succeed
    CANCELED = "canceled"


class WorkflowStepStatus(StrEnum):
    """One step of a workflow: its fleet task's outcome, or why it never ran."""

    PENDING = "pending"  # waiting for its dependencies
    RUNNING = "running"  # its fleet task runs
    SUCCEEDED = "succeeded"  # its fleet task completed (every node succeeded)
    FAILED = "failed"  # its fleet task ended otherwise, or could not be created
    SKIPPED = "skipped"  # a dependency did not succeed and its policy is "stop", or the workflow stopped
    CANCELED = "canceled"  # the workflow was canceled before it ended


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


class AppInstanceState(StrEnum):
    """Life of one instance (one supervised process) of an app (document 003 §5.2)."""

    PENDING = "pending"  # placed by the manager, sent to its node's queue
    STARTING = "starting"  # the agent fetches its uris, picks its ports and spawns it
    RUNNING = "running"  # its process runs (its health is apart: AppHealth)
    BACKOFF = "backoff"  # exited or killed after failing checks; started again once its backoff delay is over
    STOPPING = "stopping"  # asked to stop: killSignal sent, SIGKILL after the grace
    STOPPED = "stopped"  # stopped on request (scale down, update, app stopped or deleted); ends the instance
    FAILED = "failed"  # cannot be started at all (the agent refused its spec); ends the instance
    LOST = "lost"  # its node went offline; the manager replaces it (set by the manager only)

    @property
    def ended(self) -> bool:
        return self in (AppInstanceState.STOPPED, AppInstanceState.FAILED)


AGENT_REPORTED_INSTANCE_STATES = frozenset(
    {
        AppInstanceState.STARTING,
        AppInstanceState.RUNNING,
        AppInstanceState.BACKOFF,
        AppInstanceState.STOPPING,
        AppInstanceState.STOPPED,
        AppInstanceState.FAILED,
    }
)
"""The states an agent may put in an instance report."""


class AppHealth(StrEnum):
    """An app instance's health as its checks last found it (document 003 §5.2.1)."""

    HEALTHY = "healthy"  # the last check passed (or the instance runs and has no checks)
    UNHEALTHY = "unhealthy"  # the last check failed
    UNKNOWN = "unknown"  # not checked yet (initial delay), or not running


class HealthCheckProtocol(StrEnum):
    """How an agent checks an app instance (document 003 §5.2.1 ``healthChecks[].protocol``)."""

    HTTP = "HTTP"  # GET path on the port at portIndex; healthy on 200-399
    TCP = "TCP"  # a connection to the port at portIndex is accepted
    COMMAND = "COMMAND"  # the command (through /bin/sh -c, in the instance's environment) exits 0
