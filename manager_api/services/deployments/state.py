"""Pure rules: a deployment's state from its tasks' states, and the manual's 0/1 status."""

from __future__ import annotations

from collections.abc import Iterable

from shared.states import ENDED_TASK_STATES, DeploymentState, InstanceStatus, TaskState

FAULT_STATES = frozenset({TaskState.FAILED, TaskState.LOST})
LIVE_STATES = frozenset({TaskState.PENDING, TaskState.RUNNING, TaskState.STOPPING})
"""Tasks that may still have (or get) a process on their node."""


def deployment_state(current: DeploymentState, task_states: Iterable[str]) -> DeploymentState:
    """What a deployment in ``current`` reads given its tasks' states."""
    states = [TaskState(s) for s in task_states]
    all_ended = all(s in ENDED_TASK_STATES for s in states)
    if current in (DeploymentState.STOPPING, DeploymentState.STOPPED):
        return DeploymentState.STOPPED if all_ended else DeploymentState.STOPPING
    if any(s in FAULT_STATES for s in states):
        return DeploymentState.FAILED
    if all_ended:
        if all(s == TaskState.COMPLETED for s in states):
            return DeploymentState.COMPLETED
        return DeploymentState.STOPPED
    if any(s != TaskState.PENDING for s in states):
        return DeploymentState.RUNNING
    return DeploymentState.PENDING


def instance_status(state: DeploymentState | str) -> InstanceStatus:
    """0 while pending or running, 1 once stopped, stopping, failed or finished (manual §5.3.3)."""
    if DeploymentState(state) in (DeploymentState.PENDING, DeploymentState.RUNNING):
        return InstanceStatus.RUNNING
    return InstanceStatus.STOPPED
