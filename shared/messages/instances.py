"""App instances (document 003 §5.2): the RUN_INSTANCE and STOP_INSTANCE payloads with their health checks and
limits, and the agents' instance reports with their restarts and check results."""

from __future__ import annotations

from marshmallow import fields, validate

from ..defaults import (
    APP_BACKOFF_FACTOR,
    APP_BACKOFF_SECONDS,
    APP_KILL_SIGNAL,
    APP_MAX_BACKOFF_SECONDS,
    APP_STOP_GRACE_SECONDS,
)
from ..states import AGENT_REPORTED_INSTANCE_STATES, AppHealth, HealthCheckProtocol
from .base import WireSchema
from .ids import safe_id


class HealthCheckSpecSchema(WireSchema):
    """One health check of an app instance (document 003 §5.2.1 ``healthChecks[]``), run by the agent on its node.

    The manager fills every default (api/schemas/apps.py) and checks ``port_index`` against the app's ports.
    """

    protocol = fields.String(required=True, validate=validate.OneOf([p.value for p in HealthCheckProtocol]))
    path = fields.String(load_default="/")  # HTTP
    port_index = fields.Integer(load_default=0, validate=validate.Range(min=0))  # HTTP, TCP
    command = fields.String(load_default="")  # COMMAND: through /bin/sh -c in the instance's cwd and environment
    initial_delay_seconds = fields.Float(required=True, validate=validate.Range(min=0, max=86400))
    interval_seconds = fields.Float(required=True, validate=validate.Range(min=0.1, max=86400))
    timeout_seconds = fields.Float(required=True, validate=validate.Range(min=0.1, max=3600))
    max_consecutive_failures = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))


class ResourceAllocSchema(WireSchema):
    """What an app instance may use (document 003 §5.2.1 ``resAlloc``): placement reserves it, and the agent
    enforces it with cgroups where it can (0: no limit)."""

    cpus = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=4096))
    mem_mb = fields.Integer(load_default=0, validate=validate.Range(min=0, max=64 * 1024 * 1024))


class InstanceSpecSchema(WireSchema):
    """Payload of jobs.RUN_INSTANCE: one instance of an app, as the agent starts and keeps it running.

    The agent keeps it running until jobs.STOP_INSTANCE: started again when its process exits or its checks
    fail, after a backoff. The same ``instance_id`` again is a no-op while it runs (a redelivered job never
    starts a second copy); a rolling update makes new instances rather than changing one.
    """

    app = fields.String(required=True, validate=safe_id)
    instance_id = fields.String(required=True, validate=safe_id)
    version = fields.Integer(required=True, validate=validate.Range(min=1))  # of the app's definition
    command = fields.String(required=True, validate=validate.Length(min=1))  # toProcess; with args, via /bin/sh -c
    args = fields.List(fields.String(), load_default=list)
    working_dir = fields.String(allow_none=True, load_default=None)  # None: a directory of the agent's own
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    secret_env = fields.String(load_default=None, allow_none=True)
    """shared.secret_env.seal of the app's secretEnvs for this node, bound to secret_env.instance_context; None
    for none. The agent keeps it sealed (apps.json) and opens it at each start of the process."""
    ports = fields.List(fields.Integer(validate=validate.Range(min=0, max=65535)), load_default=list)  # 0: agent picks
    kill_signal = fields.Integer(load_default=APP_KILL_SIGNAL, validate=validate.Range(min=1, max=64))
    stop_grace_seconds = fields.Float(load_default=APP_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600))
    uris = fields.List(fields.String(), load_default=list)  # http(s):// or sftp://; .zip unpacked
    health_checks = fields.List(fields.Nested(HealthCheckSpecSchema), load_default=list)
    res_alloc = fields.Nested(ResourceAllocSchema, allow_none=True, load_default=None)
    backoff_seconds = fields.Float(load_default=APP_BACKOFF_SECONDS, validate=validate.Range(min=0, max=3600))
    backoff_factor = fields.Float(load_default=APP_BACKOFF_FACTOR, validate=validate.Range(min=1, max=100))
    max_backoff_seconds = fields.Float(load_default=APP_MAX_BACKOFF_SECONDS, validate=validate.Range(min=0, max=86400))


class StopInstanceSchema(WireSchema):
    """Payload of jobs.STOP_INSTANCE: stop an app instance for good (killSignal to its process group, SIGKILL
    after the grace), free its ports once it is gone, and forget it; an unknown instance reads stopped."""

    app = fields.String(required=True, validate=safe_id)
    instance_id = fields.String(required=True, validate=safe_id)
    kill_signal = fields.Integer(load_default=APP_KILL_SIGNAL, validate=validate.Range(min=1, max=64))
    grace_seconds = fields.Float(load_default=APP_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600))
    reason = fields.String(load_default="")  # why, for the agent's log (scaled down, replaced, stale copy...)


class InstanceRestartSchema(WireSchema):
    """One automatic restart of an app instance: when and why (exit code, signal, failed check, out of memory)."""

    at = fields.Float(required=True)  # unix time on the agent when the old process ended
    reason = fields.String(required=True)  # e.g. "exited with code 1", "killed by signal 9", "health check failed
    # 3 times in a row: HTTP 500", "out of memory (cgroup limit 64 MB)"
    exit_code = fields.Integer(allow_none=True, load_default=None)
    signal = fields.Integer(allow_none=True, load_default=None)
    oom = fields.Boolean(load_default=False)


class HealthResultSchema(WireSchema):
    """The last result of an instance's health checks."""

    at = fields.Float(required=True)  # unix time on the agent
    ok = fields.Boolean(required=True)
    answer = fields.String(load_default="")  # "HTTP 200", "connection refused", "exit 1: <first output line>"...
    consecutive_failures = fields.Integer(load_default=0)


class InstanceReportSchema(WireSchema):
    """An app instance's state, appended by its agent to its keys.node_reports (kind "instance") on every change
    and every defaults.APP_REPORT_INTERVAL while the agent holds it (so the manager can stop copies it no
    longer wants: one rule, the manager decides)."""

    # Safe ids as in the spec: the manager answers a report of an instance it does not want with a stop naming
    # them, so a malformed one is refused here rather than when that stop is built.
    app = fields.String(required=True, validate=safe_id)
    instance_id = fields.String(required=True, validate=safe_id)
    node_id = fields.String(required=True)
    version = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_INSTANCE_STATES)))
    health = fields.String(required=True, validate=validate.OneOf([h.value for h in AppHealth]))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    ports = fields.List(fields.Integer(), load_default=list)  # as assigned, in the order of the spec's ports
    started_at = fields.Float(allow_none=True, load_default=None)  # of the current process
    restarts = fields.Integer(load_default=0)  # automatic restarts so far
    restart = fields.Nested(InstanceRestartSchema, allow_none=True, load_default=None)  # set when one just happened
    next_start_at = fields.Float(allow_none=True, load_default=None)  # BACKOFF: when it starts again
    exit_code = fields.Integer(allow_none=True, load_default=None)  # of the last process that ended
    signal = fields.Integer(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None)  # last end or failure, as InstanceRestartSchema
    last_check = fields.Nested(HealthResultSchema, allow_none=True, load_default=None)
    limits = fields.String(allow_none=True, load_default=None)  # "enforced (cgroup v1)", "not enforced: ..."
