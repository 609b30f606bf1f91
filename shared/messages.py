"""Wire schemas of what crosses between manager and agents: the join call, job payloads, task events.

Both sides load what they receive through these schemas, so a malformed message fails loudly at the
boundary instead of deep inside a service.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from .states import AGENT_REPORTED_STATES


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


def dump(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing message with ``schema`` and return it ready for JSON."""
    loaded = schema().load(data)
    return schema().dump(loaded)
