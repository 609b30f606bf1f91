"""Wire schemas of what crosses between manager and agents: the join call, job payloads, task events.

Both sides load what they receive through these schemas, so a malformed message fails loudly at the
boundary instead of deep inside a service.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from .defaults import TASK_TIMEOUT_MAX
from .states import AGENT_REPORTED_HOST_STATUSES, AGENT_REPORTED_STATES


class _Wire(Schema):
    class Meta:
        # Newer peers may add fields; an older peer ignores them instead of failing.
        unknown = EXCLUDE


class JoinRequestSchema(_Wire):
    """Body of POST /api/agent/join, sent by an agent when it starts or reconnects."""

    node_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    hostname = fields.String(required=True, validate=validate.Length(min=1, max=255))
    ip = fields.String(required=True, validate=validate.Length(min=1, max=64))
    interval = fields.Float(required=True, validate=validate.Range(min=0.1, max=3600))
    protocol = fields.Integer(required=True)
    version = fields.String(load_default="")
    facts = fields.Dict(keys=fields.String(), load_default=dict)


class JoinResponseSchema(_Wire):
    """Answer of POST /api/agent/join: all an agent needs to work its queue."""

    node_id = fields.String(required=True)
    redis_url = fields.String(required=True)
    queue = fields.String(required=True)
    protocol = fields.Integer(required=True)


class StartTaskSchema(_Wire):
    """Payload of jobs.START_TASK."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    deployment_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True)
    command = fields.String(required=True, validate=validate.Length(min=1))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class StopTasksSchema(_Wire):
    """Payload of jobs.STOP_TASKS."""

    task_ids = fields.List(fields.String(), required=True)
    deployment_id = fields.String(load_default="")  # so a node that never knew a task can still report it
    grace_seconds = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=3600))


class TaskEventSchema(_Wire):
    """A change of a task's state, appended by an agent to keys.EVENTS_STREAM."""

    task_id = fields.String(required=True)
    deployment_id = fields.String(required=True)
    node_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_STATES)))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    started_at = fields.Float(allow_none=True, load_default=None)
    error = fields.String(allow_none=True, load_default=None)


class RunCommandSchema(_Wire):
    """Payload of jobs.RUN_COMMAND."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    command = fields.String(required=True, validate=validate.Length(min=1))
    timeout = fields.Float(required=True, validate=validate.Range(min=0.1, max=TASK_TIMEOUT_MAX))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class CancelCommandSchema(_Wire):
    """Payload of jobs.CANCEL_COMMAND."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CommandReportSchema(_Wire):
    """One node's report on a fleet task, appended by its agent to keys.COMMAND_REPORTS_STREAM.

    A ``running`` report comes when the command starts; one final report (succeeded, failed, timed_out,
    canceled) carries the captured output, each capped at defaults.OUTPUT_CAP_BYTES.
    """

    task_id = fields.String(required=True)
    node_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_HOST_STATUSES)))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    stdout = fields.String(load_default="")
    stderr = fields.String(load_default="")
    stdout_truncated = fields.Boolean(load_default=False)
    stderr_truncated = fields.Boolean(load_default=False)
    started_at = fields.Float(allow_none=True, load_default=None)
    finished_at = fields.Float(allow_none=True, load_default=None)
    error_message = fields.String(allow_none=True, load_default=None)


class OutputLineSchema(_Wire):
    """One entry of keys.task_output(task_id): a line (or a chunk of a very long line) of one node."""

    node_id = fields.String(required=True)
    stream = fields.String(required=True, validate=validate.OneOf(["stdout", "stderr"]))
    line = fields.String(required=True)


def dump(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing message with ``schema`` and return it ready for JSON."""
    loaded = schema().load(data)
    return schema().dump(loaded)
