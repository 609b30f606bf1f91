"""The manual's deployment tasks: the START_TASK and STOP_TASKS payloads, and the agents' task events."""

from __future__ import annotations

from marshmallow import fields, validate

from ..states import AGENT_REPORTED_STATES
from .base import WireSchema


class StartTaskSchema(WireSchema):
    """Payload of jobs.START_TASK."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    deployment_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True)
    command = fields.String(required=True, validate=validate.Length(min=1))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class StopTasksSchema(WireSchema):
    """Payload of jobs.STOP_TASKS."""

    task_ids = fields.List(fields.String(), required=True)
    deployment_id = fields.String(load_default="")  # so a node that never knew a task can still report it
    grace_seconds = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=3600))


class TaskEventSchema(WireSchema):
    """A change of a task's state, appended by an agent to its keys.node_reports (kind "event")."""

    task_id = fields.String(required=True)
    deployment_id = fields.String(required=True)
    node_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_STATES)))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    started_at = fields.Float(allow_none=True, load_default=None)
    error = fields.String(allow_none=True, load_default=None)
