"""Answers of the deployments API (presenters.deployments, manual §5.3.3 and §5.6)."""

from __future__ import annotations

from manager_api.api.schemas.answers.common import (
    Answer,
    PageAnswer,
    counts,
    integer,
    many,
    nested,
    one_of,
    text,
    time,
)
from shared.states import DeploymentState, InstanceStatus, TaskState

_STATUS = "0 running, 1 stopped or failed (manual §5.3.3)."


class DeploymentStatusAnswer(Answer):
    """POST /api/task/task_group/query."""

    id = text()
    status = one_of(InstanceStatus, metadata={"description": _STATUS})
    state = one_of(DeploymentState)


class TaskNodeAnswer(Answer):
    id = text()
    hostname = text()
    ip = text()


class DeploymentTaskAnswer(Answer):
    id = text()
    name = text()
    group = integer(metadata={"description": "Index of its task group."})
    command = text()
    host = text(nullable=True, metadata={"description": "The host it was pinned to, if any."})
    node = nested(TaskNodeAnswer)
    pid = integer(nullable=True)
    state = one_of(TaskState)
    exit_code = integer(nullable=True)
    error = text(nullable=True)
    started_at = time(nullable=True)
    ended_at = time(nullable=True)


class DeploymentSummaryAnswer(Answer):
    id = text()
    name = text(metadata={"description": "Its template's name."})
    state = one_of(DeploymentState)
    status = one_of(InstanceStatus, metadata={"description": _STATUS})
    created_at = time()
    stopped_at = time(nullable=True)


class DeploymentAnswer(DeploymentSummaryAnswer):
    """A deployment with every task (GET /deployments/{id})."""

    tasks = many(DeploymentTaskAnswer)


class DeploymentListItemAnswer(DeploymentSummaryAnswer):
    task_count = integer()
    task_states = counts()


class DeploymentPageAnswer(PageAnswer):
    deployments = many(DeploymentListItemAnswer)


class DeploymentDeletedAnswer(Answer):
    id = text()
    status = one_of(["success"])
    message = text()
