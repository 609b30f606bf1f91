"""Answers of the fleet tasks API (presenters.fleet_tasks): a task with its hosts, the list."""

from __future__ import annotations

from marshmallow import fields, validate

from manager_api.api.schemas.answers.common import (
    Answer,
    PageAnswer,
    boolean,
    integer,
    many,
    nested,
    one_of,
    strings,
    text,
    time,
)
from manager_api.api.schemas.answers.scripts import TaskScriptAnswer
from shared.states import FleetTaskStatus, HostRunStatus


class ProgressAnswer(Answer):
    """Hosts counted by outcome (services.fleet_tasks.state.counts_of) and the percentage that ended."""

    total = integer()
    ended = integer()
    succeeded = integer()
    failed = integer(metadata={"description": "Ended without succeeding."})
    running = integer()
    pending = integer()
    percent = integer()


class TaskHostAnswer(Answer):
    """One host's part of a task."""

    host_id = text(nullable=True, metadata={"description": "Null once the node was forgotten."})
    hostname = text()
    ip = text()
    target = text(metadata={"description": "The target that selected this node (or matched nothing)."})
    status = one_of(HostRunStatus)
    stdout = text()
    stderr = text()
    stdout_truncated = boolean()
    stderr_truncated = boolean()
    exit_code = integer(nullable=True)
    started_at = time(nullable=True)
    finished_at = time(nullable=True)
    execution_time = integer(nullable=True, metadata={"description": "Milliseconds on the node, once it ended."})
    error_message = text(nullable=True)


class DeliveryCountsAnswer(Answer):
    """A processor's deliveries (each node's result, the summary) by state."""

    pending = integer()
    sent = integer()
    given_up = integer()


class ProcessorAnswer(Answer):
    """Where a task's results go (scheme, host and port: never the path or the secret); a task's detail adds
    how its deliveries stand."""

    url = text()
    deliveries = fields.Nested(DeliveryCountsAnswer, metadata={"description": "Detail only."})
    summary = fields.String(
        allow_none=True,
        validate=validate.OneOf(["pending", "sent", "given_up"]),
        metadata={"description": "Detail only: null until the task ends and its summary is queued."},
    )
    last_error = fields.String(metadata={"description": "Detail only: the last failed attempt's error, or empty."})


class FleetTaskSummaryAnswer(Answer):
    """A task as GET /api/tasks lists it."""

    task_id = text()
    name = text()
    description = text()
    command = text()
    parameters = text()
    timeout = integer(metadata={"description": "Seconds per node."})
    targets = strings(metadata={"description": "As posted; resolved to hosts at start."})
    secretEnv = fields.Dict(  # noqa: N815 - the API's spelling
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": 'Names of the secret env, each with "(secret)": a value is never answered.'},
    )
    processor = nested(ProcessorAnswer, nullable=True)
    script = nested(TaskScriptAnswer, nullable=True, metadata={"description": "The script it runs, or null."})
    status = one_of(FleetTaskStatus)
    total_hosts = integer()
    completed_hosts = integer(metadata={"description": "Hosts that ended, whatever the outcome."})
    failed_hosts = integer()
    progress = nested(ProgressAnswer)
    created_by = text()
    started_by = text(nullable=True)
    canceled_by = text(nullable=True)
    created_at = time()
    updated_at = time()
    started_at = time(nullable=True)
    finished_at = time(nullable=True)
    canceled_at = time(nullable=True)


class FleetTaskAnswer(FleetTaskSummaryAnswer):
    """A task with every host's result."""

    hosts = many(TaskHostAnswer)


class FleetTaskPageAnswer(PageAnswer):
    tasks = many(FleetTaskSummaryAnswer)
    size = integer(metadata={"description": "page_size, under its older name."})
