"""Answers of the workflows API (presenters.workflows)."""

from __future__ import annotations

from manager_api.api.schemas.answers.common import (
    Answer,
    PageAnswer,
    counts,
    integer,
    many,
    nested,
    one_of,
    strings,
    text,
    time,
)
from shared.states import FleetTaskStatus, WorkflowStatus, WorkflowStepStatus


class WorkflowProgressAnswer(Answer):
    done = integer(metadata={"description": "Steps that ended, whatever the outcome."})
    total = integer()
    text = text(metadata={"description": '"done/total".'})
    by_status = counts()


class StepHostsAnswer(Answer):
    total = integer()
    ended = integer()
    failed = integer()
    succeeded = integer()


class WorkflowStepAnswer(Answer):
    name = text()
    depends_on = strings()
    on_failed_dependency = one_of(["stop", "continue"])
    command = text(nullable=True, metadata={"description": "Null when the step runs a script."})
    script = text(nullable=True, metadata={"description": "The script's name@version, or null for a command."})
    targets = strings()
    status = one_of(WorkflowStepStatus)
    reason = text(metadata={"description": "Why it was skipped, canceled or failed without a task."})
    task_id = text(nullable=True)
    task_url = text(nullable=True)
    task_status = one_of(FleetTaskStatus, nullable=True)
    hosts = nested(StepHostsAnswer, nullable=True)
    started_at = time(nullable=True)
    finished_at = time(nullable=True)


class WorkflowAnswer(Answer):
    id = text()
    name = text()
    status = one_of(WorkflowStatus)
    progress = nested(WorkflowProgressAnswer)
    created_by = text()
    created_at = time()
    started_at = time(nullable=True)
    finished_at = time(nullable=True)
    canceled_by = text(nullable=True)
    canceled_at = time(nullable=True)


class WorkflowDetailAnswer(WorkflowAnswer):
    steps = many(WorkflowStepAnswer)


class WorkflowPageAnswer(PageAnswer):
    workflows = many(WorkflowAnswer)
