"""Fleet tasks (document 004): the RUN_COMMAND and CANCEL_COMMAND payloads, each node's report, and the lines
of live output."""

from __future__ import annotations

from marshmallow import fields, validate

from ..defaults import TASK_TIMEOUT_MAX
from ..states import AGENT_REPORTED_HOST_STATUSES
from .base import WireSchema


class ScriptRunSchema(WireSchema):
    """The registered script a RUN_COMMAND runs (issue 17): the agent fetches its content by digest once
    (keys.script_content), checks it, caches it and runs [interpreter, file, *args]."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    version = fields.String(required=True, validate=validate.Length(min=1, max=64))
    digest = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    interpreter = fields.String(required=True, validate=validate.Length(min=1, max=255))
    kind = fields.String(required=True, validate=validate.OneOf(["body", "zip"]))
    entry = fields.String(load_default="", validate=validate.Length(max=255))
    args = fields.List(fields.String(), load_default=list)


class RunCommandSchema(WireSchema):
    """Payload of jobs.RUN_COMMAND."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    command = fields.String(required=True, validate=validate.Length(min=1))
    timeout = fields.Float(required=True, validate=validate.Range(min=0.1, max=TASK_TIMEOUT_MAX))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    secret_env = fields.String(load_default=None, allow_none=True)
    """shared.secret_env.seal of the task's secret env for this node, bound to "task:<task_id>"; None for none."""
    script = fields.Nested(ScriptRunSchema, load_default=None, allow_none=True)
    """The registered script to run instead of ``command`` (which then only names it); None for a command."""
    deadline = fields.Float(load_default=None, allow_none=True)
    """Redis time (unix seconds) the command must have ended by: the agent never starts it later (it reports
    it expired) and kills it then. The manager gives up on the host only after it plus a slack, so a command
    never runs after its task reads final. None from managers that predate it."""


class CancelCommandSchema(WireSchema):
    """Payload of jobs.CANCEL_COMMAND."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class ScheduleFiringSchema(WireSchema):
    """Which agent-side schedule fired a command, and when: the manager makes the task of a firing from it."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    fired_at = fields.String(required=True, validate=validate.Length(min=1, max=64))  # ISO 8601, UTC
    command = fields.String(required=True, validate=validate.Length(min=1))  # the task's, the schedule may be gone
    timeout = fields.Float(required=True)


class AgentScheduleSchema(WireSchema):
    """One agent-side schedule as its target nodes hold it (agent-schedules.json)."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    command = fields.String(required=True, validate=validate.Length(min=1))
    script = fields.Nested(ScriptRunSchema, load_default=None, allow_none=True)
    """The registered script it runs instead of ``command`` (which then only names it): the agent caches it when
    the set arrives, and runs it from there at each firing; None for a command."""
    timeout = fields.Float(required=True, validate=validate.Range(min=0.1, max=TASK_TIMEOUT_MAX))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    cron = fields.String(allow_none=True, load_default=None)
    interval = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1))
    created_at = fields.Float(required=True)  # unix seconds: intervals count from it, as on the manager
    paused = fields.Boolean(load_default=False)


class AgentScheduleSetSchema(WireSchema):
    """Payload of jobs.SYNC_AGENT_SCHEDULES: a node's FULL set of agent-side schedules, at one version."""

    version = fields.Integer(required=True, validate=validate.Range(min=0))
    schedules = fields.List(fields.Nested(AgentScheduleSchema), required=True)


class CommandReportSchema(WireSchema):
    """One node's report on a fleet task, appended by its agent to its keys.node_reports (kind "command").

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
    schedule = fields.Nested(ScheduleFiringSchema, allow_none=True, load_default=None)
    """Set when an agent-side schedule fired the command: the manager then makes its task if it has none."""


class OutputLineSchema(WireSchema):
    """One entry of keys.task_output(task_id, node_id): a line (or a chunk of a very long line) of one node."""

    node_id = fields.String(required=True)
    stream = fields.String(required=True, validate=validate.OneOf(["stdout", "stderr"]))
    line = fields.String(required=True)
